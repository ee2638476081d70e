#include "data/imagenet_val.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "data/archive.h"
#include "data/mat5.h"
#include "io/file.h"

namespace resnet {
namespace fs = std::filesystem;

namespace {

constexpr const char* kMeta = "data/meta.mat";
constexpr const char* kGroundTruth = "data/ILSVRC2012_validation_ground_truth.txt";

// The devkit's folder that holds data/meta.mat: `root` or its one subfolder (the archive unpacks
// to ILSVRC2012_devkit_t12/).
fs::path devkit_root(const fs::path& root, const std::string& named) {
  if (fs::exists(root / kMeta)) return root;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec))
    if (entry.is_directory() && fs::exists(entry.path() / kMeta)) return entry.path();
  throw InputError(named + ": holds no " + kMeta + " (expected ImageNet's devkit, ILSVRC2012_devkit_t12.tar.gz)");
}

ImageNetDevkit read_devkit_folder(const fs::path& root) {
  ImageNetDevkit kit;
  const std::string meta_path = (root / kMeta).string();
  const auto variables = read_mat5(read_file_bytes(meta_path), meta_path);
  const auto it = variables.find("synsets");
  if (it == variables.end() || it->second.kind != MatArray::Kind::kStruct)
    throw InputError(meta_path + ": has no struct array 'synsets'");
  const MatArray& synsets = it->second;
  for (int64_t e = 0; e < synsets.count(); ++e) {
    const MatArray& id = synsets.field(e, "ILSVRC2012_ID", meta_path);
    const MatArray& wnid = synsets.field(e, "WNID", meta_path);
    const std::string synset = meta_path + ": synset " + std::to_string(e + 1);
    if (id.numbers.size() != 1 || wnid.kind != MatArray::Kind::kChar)
      throw InputError(synset + " lacks its ILSVRC2012_ID or WNID");
    const double number = id.numbers[0];
    // a class id a line of the ground truth can name, and a WordNet id (n and 8 digits): it
    // becomes a folder name, so nothing else (no '/', no '..')
    if (!(number >= 1 && number <= 1e9 && number == std::floor(number)))
      throw InputError(synset + " has ILSVRC2012_ID " + std::to_string(number) + ", not a whole number from 1");
    const bool wordnet = wnid.text.size() == 9 && wnid.text[0] == 'n' &&
                         std::all_of(wnid.text.begin() + 1, wnid.text.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!wordnet) throw InputError(synset + " has WNID '" + wnid.text + "', not a WordNet id such as n01440764");
    if (!kit.wnid_of_id.emplace(static_cast<int64_t>(number), wnid.text).second)
      throw InputError(synset + " repeats ILSVRC2012_ID " + std::to_string(static_cast<int64_t>(number)));
  }
  const std::string truth_path = (root / kGroundTruth).string();
  std::ifstream in(truth_path);
  if (!in) throw InputError(truth_path + ": missing (the devkit's validation ground truth)");
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream words(line);
    int64_t id = 0;
    std::string rest;
    if (!(words >> id) || (words >> rest))
      throw InputError(truth_path + ": line " + std::to_string(n) + " is not one class id: '" + line + "'");
    if (!kit.wnid_of_id.count(id))
      throw InputError(truth_path + ": line " + std::to_string(n) + " has class id " + std::to_string(id) +
                       ", which " + meta_path + " does not list");
    kit.ground_truth.push_back(id);
  }
  if (kit.ground_truth.empty()) throw InputError(truth_path + ": lists no image");
  return kit;
}

}  // namespace

ImageNetDevkit read_imagenet_devkit(const std::string& path) {
  if (!fs::exists(path)) throw InputError(path + ": no such file or folder (--devkit)");
  if (fs::is_directory(path)) return read_devkit_folder(devkit_root(path, path));
  std::string pattern = (fs::temp_directory_path() / "resnet-devkit-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) throw InputError(pattern + ": cannot make a temporary folder to unpack " + path);
  const fs::path temp = pattern;
  try {
    extract_archive(path, temp.string());
    ImageNetDevkit kit = read_devkit_folder(devkit_root(temp, path));
    fs::remove_all(temp);
    return kit;
  } catch (...) {
    std::error_code ec;
    fs::remove_all(temp, ec);
    throw;
  }
}

std::string imagenet_val_name(int64_t k) {
  char name[48];
  std::snprintf(name, sizeof name, "ILSVRC2012_val_%08lld.JPEG", static_cast<long long>(k));
  return name;
}

ValSorted sort_imagenet_val(const std::string& val_dir, const ImageNetDevkit& devkit) {
  if (!fs::is_directory(val_dir)) throw InputError(val_dir + ": no such folder (--imagenet-val)");
  const fs::path dir(val_dir);
  ValSorted done;
  std::vector<bool> flat(devkit.ground_truth.size());
  std::set<std::string> classes;
  const std::string nothing_moved = "; nothing was moved";
  for (size_t k = 0; k < devkit.ground_truth.size(); ++k) {  // everything checked before anything moves
    const std::string name = imagenet_val_name(static_cast<int64_t>(k) + 1);
    const std::string& wnid = devkit.wnid_of_id.at(devkit.ground_truth[k]);
    classes.insert(wnid);
    flat[k] = fs::is_regular_file(dir / name);
    const bool sorted = fs::is_regular_file(dir / wnid / name);
    if (!flat[k] && !sorted)
      throw InputError((dir / name).string() + ": missing, and not in " + (dir / wnid).string() + " either (the devkit lists " +
                       std::to_string(devkit.ground_truth.size()) + " validation images" + nothing_moved + ")");
    if (flat[k] && sorted)
      throw InputError((dir / name).string() + ": also in " + (dir / wnid).string() + "; remove one of them" + nothing_moved);
  }
  for (const std::string& wnid : classes)
    if (fs::exists(dir / wnid) && !fs::is_directory(dir / wnid))
      throw InputError((dir / wnid).string() + ": is a file where its class folder goes" + nothing_moved);
  for (const std::string& wnid : classes) fs::create_directories(dir / wnid);
  for (size_t k = 0; k < devkit.ground_truth.size(); ++k) {
    const std::string name = imagenet_val_name(static_cast<int64_t>(k) + 1);
    const std::string& wnid = devkit.wnid_of_id.at(devkit.ground_truth[k]);
    if (!flat[k]) {
      ++done.already;
      continue;
    }
    fs::rename(dir / name, dir / wnid / name);  // the same file system: an atomic move
    ++done.moved;
  }
  done.classes = static_cast<int64_t>(classes.size());
  return done;
}

}  // namespace resnet
