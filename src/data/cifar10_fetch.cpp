#include "data/cifar10_fetch.h"

#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "data/archive.h"
#include "data/cifar10.h"
#include "data/download.h"
#include "data/md5.h"

namespace resnet {
namespace fs = std::filesystem;

namespace {

const std::vector<std::string>& release_files() {
  static const std::vector<std::string> files = {"batches.meta.txt", "data_batch_1.bin", "data_batch_2.bin",
                                                 "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin",
                                                 "test_batch.bin"};
  return files;
}

std::string offline_hint(const FetchOptions& o) {
  return "\nIf this machine cannot reach the internet, download " + std::string(kCifar10Archive) + " elsewhere (" +
         o.urls.front() + "), copy it here and run: resnet data --data " + o.data_dir + " --archive <file>";
}

}  // namespace

bool cifar10_ready(const std::string& dir) {
  const std::string bin = find_cifar10_binary(dir);
  if (bin.empty()) return false;
  for (const auto& f : release_files())
    if (!fs::is_regular_file(fs::path(bin) / f)) return false;
  return true;
}

std::string fetch_cifar10(const FetchOptions& o, const std::function<void(const std::string&)>& say) {
  const fs::path target = fs::path(o.data_dir) / "cifar-10-batches-bin";
  if (cifar10_ready(o.data_dir)) {
    say("CIFAR-10 is ready in " + find_cifar10_binary(o.data_dir) + "; nothing to download");
    return find_cifar10_binary(o.data_dir);
  }
  if (!o.archive.empty() && !fs::is_regular_file(o.archive))  // before any folder is made
    throw InputError(o.archive + ": no such file (--archive)");
  std::error_code ec;
  const bool had_folder = fs::exists(o.data_dir, ec);
  fs::create_directories(o.data_dir, ec);
  if (ec) throw InputError(o.data_dir + ": cannot create the data folder: " + ec.message());

  std::string archive = o.archive;
  if (archive.empty()) {
    archive = (fs::path(o.data_dir) / kCifar10Archive).string();
    if (!fs::exists(archive)) {
      say("downloading " + std::string(kCifar10Archive) + " into " + o.data_dir);
      DownloadOptions d;
      d.urls = o.urls;
      d.md5 = o.md5;
      d.attempts_per_url = o.attempts_per_url;
      d.retry_delay_ms = o.retry_delay_ms;
      d.progress = o.progress;
      try {
        download_file(archive, d);
      } catch (const DownloadError& e) {
        if (!had_folder) fs::remove(o.data_dir, ec);  // the folder made for it, when nothing is in it
        throw DownloadError(std::string(e.what()) + offline_hint(o));
      }
    }
  }
  if (!o.md5.empty()) {
    const std::string got = md5_file(archive);
    if (got != o.md5)
      throw InputError(archive + ": MD5 is " + got + ", expected " + o.md5 +
                       " (not the CIFAR-10 binary release, or damaged); nothing was unpacked");
  }

  say("unpacking " + archive);
  const fs::path tmp = fs::path(o.data_dir) / (".unpack-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  try {
    extract_archive(archive, tmp.string());
    const std::string bin = find_cifar10_binary(tmp.string());
    if (bin.empty() || !cifar10_ready(tmp.string()))
      throw InputError(archive + ": does not hold the CIFAR-10 binary release (cifar-10-batches-bin/ with " +
                       "data_batch_1..5.bin, test_batch.bin, batches.meta.txt)");
    fs::remove_all(target, ec);  // an incomplete earlier copy
    fs::rename(bin, target);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  fs::remove_all(tmp, ec);
  say("CIFAR-10 is ready in " + target.string());
  return target.string();
}

}  // namespace resnet
