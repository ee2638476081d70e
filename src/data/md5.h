// MD5 (RFC 1321), to check a download against the digest its publisher gives. Not for security.
#pragma once

#include <cstdint>
#include <string>

namespace resnet {

class Md5 {
 public:
  Md5();
  void update(const void* data, size_t size);
  std::string hex_digest();  // finishes; lower-case hex, 32 characters

 private:
  void block(const uint8_t* chunk);
  uint32_t state_[4];
  uint64_t length_ = 0;  // bytes seen
  uint8_t buffer_[64];
  size_t buffered_ = 0;
};

// Digest of a whole file; InputError when it cannot be read.
std::string md5_file(const std::string& path);

}  // namespace resnet
