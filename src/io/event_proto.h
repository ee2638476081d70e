// TensorBoard's Event messages, serialised (protobuf, from TensorBoard's own definitions compiled
// at build time: scripts/tensorboard_descriptors.py). A build without protobuf or without Python's
// tensorboard package has none: tensorboard_supported() is false and the others throw saying what
// to install. Kept apart from LibTorch's headers (which carry a protobuf of their own), as the
// ONNX writer.
#pragma once

#include <cstdint>
#include <string>

namespace resnet {

bool tensorboard_supported();
// What a build without it says (where TensorBoard files are asked for).
inline constexpr const char* kNoTensorBoard =
    "this build writes no TensorBoard files (it found no protobuf compiler and library, or no Python tensorboard "
    "package; scripts/install-deps installs them, then rebuild)";

// wall_time: seconds since the epoch. The first event of a file names the format version.
std::string event_file_version(double wall_time);
std::string event_scalar(double wall_time, int64_t step, const std::string& tag, float value);
// A text summary (TensorBoard's Text tab renders it as Markdown).
std::string event_text(double wall_time, int64_t step, const std::string& tag, const std::string& text);
// SessionLog START at `step`: TensorBoard drops the data its files hold at this step or later (a
// resumed run replaces what was logged after its checkpoint).
std::string event_session_start(double wall_time, int64_t step);

}  // namespace resnet
