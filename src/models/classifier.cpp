#include "models/classifier.h"

namespace resnet {

int64_t count_parameters(const torch::nn::Module& model) {
  int64_t total = 0;
  for (const auto& p : model.parameters(/*recurse=*/true)) total += p.numel();
  return total;
}

}  // namespace resnet
