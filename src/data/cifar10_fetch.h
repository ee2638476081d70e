// `resnet data`: make CIFAR-10's binary release ready in a folder.
//
// Already there (every .bin file and batches.meta.txt): says so, fetches nothing. Otherwise takes
// `archive` (a file the user fetched) or downloads cifar-10-binary.tar.gz (https first, then
// http, as the original sample), checks its MD5, unpacks into a temporary folder beside the
// target and renames `cifar-10-batches-bin` into place: an interrupted run never leaves a
// folder that looks complete.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace resnet {

constexpr const char* kCifar10Md5 = "c32a1d4ab5d03f1284b67883e8d87530";
constexpr const char* kCifar10Archive = "cifar-10-binary.tar.gz";

struct FetchOptions {
  std::string data_dir = "data/cifar10";
  std::string archive;  // use this file instead of downloading
  std::vector<std::string> urls = {"https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                                   "http://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"};
  std::string md5 = kCifar10Md5;
  int attempts_per_url = 4;
  int retry_delay_ms = 2000;
  bool progress = false;
};

// Whether `dir` (or dir/cifar-10-batches-bin) holds a complete binary release.
bool cifar10_ready(const std::string& dir);

// Returns the folder that holds the .bin files. Messages go to `say` (one line each).
// InputError / DownloadError say what failed and, offline, how to supply the archive by hand.
std::string fetch_cifar10(const FetchOptions& options, const std::function<void(const std::string&)>& say);

}  // namespace resnet
