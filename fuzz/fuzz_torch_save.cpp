// torch.save files (io/torch_save.h): the zip container and our unpickler, as --weights,
// checkpoint.pth and resume.pt are read.
#include "fuzz_util.h"
#include "io/torch_save.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = resnet::fuzz::write_input(data, size, "input.pt");
  resnet::fuzz::expect_clean([&] { resnet::load_torch_dict(path); });
  resnet::fuzz::expect_clean([&] { resnet::load_tensor_dict(path); });
  return 0;
}
