// ImageNet's validation split in the image-folder layout (issue 15). The official
// ILSVRC2012_img_val.tar unpacks into one flat folder of 50,000 files, ILSVRC2012_val_00000001.JPEG
// to ILSVRC2012_val_00050000.JPEG; their classes are in the devkit (ILSVRC2012_devkit_t12.tar.gz):
// data/ILSVRC2012_validation_ground_truth.txt, one ILSVRC2012_ID a line in file order, and
// data/meta.mat, whose struct array `synsets` maps each ILSVRC2012_ID to its WordNet id (WNID),
// the class folder names of the training split. `resnet data --imagenet-val DIR --devkit PATH`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace resnet {

struct ImageNetDevkit {
  std::map<int64_t, std::string> wnid_of_id;  // ILSVRC2012_ID -> WNID, from meta.mat
  std::vector<int64_t> ground_truth;          // validation image k's (from 1) ILSVRC2012_ID at k - 1
};

// The devkit at `path`: its .tar.gz (or any archive libarchive reads) or the folder it unpacks to.
// InputError naming the file and what is wrong or missing.
ImageNetDevkit read_imagenet_devkit(const std::string& path);

// The file name of validation image k (from 1): ILSVRC2012_val_0000000k.JPEG.
std::string imagenet_val_name(int64_t k);

struct ValSorted {
  int64_t moved = 0;    // files moved into their class folder
  int64_t already = 0;  // files found in their class folder already (a second run)
  int64_t classes = 0;  // class folders the split has
};

// Moves each validation image in `val_dir` into `val_dir/<WNID>/`. Every image the ground truth
// lists must be there, flat or in its folder, before anything moves (InputError naming the first
// one missing otherwise: nothing moved); running it again moves nothing.
ValSorted sort_imagenet_val(const std::string& val_dir, const ImageNetDevkit& devkit);

}  // namespace resnet
