// Device selection from the user's `--device` spelling.
//
// Accepts `auto` (CUDA when a GPU is visible, else the CPU), `cpu`, `cuda`, `cuda:N`.
// `dml` (the DirectML device of the original sample) and anything else get a UsageError that
// says what is accepted.
#pragma once

#include <string>

#include <c10/core/Device.h>

namespace resnet {

c10::Device parse_device(const std::string& spec);

// A short human name: "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)".
std::string describe_device(const c10::Device& device);

}  // namespace resnet
