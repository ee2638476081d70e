// TFRecord framing, as TensorBoard's event files use it: each record is its length (uint64,
// little-endian), the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the
// data.
#pragma once

#include <cstdint>
#include <string>

namespace resnet {

uint32_t crc32c(const void* data, size_t size);           // Castagnoli, as SSE4.2's crc32 instruction
uint32_t masked_crc32c(const void* data, size_t size);    // TensorFlow's mask: rotate right 15, add a constant
std::string tfrecord(const std::string& data);            // one framed record

}  // namespace resnet
