// Unpacking archives (tar, tar.gz, tar.xz, zip, ...) with libarchive.
//
// Entries with absolute paths or `..` components are refused before anything is written (an
// archive must not write outside its folder); so are links that point outside. A corrupt
// archive is an InputError naming it. The caller unpacks into a fresh temporary folder and
// renames it into place, so a failure never leaves a half-unpacked folder that looks complete.
#pragma once

#include <string>

namespace resnet {

void extract_archive(const std::string& archive, const std::string& dest_dir);

}  // namespace resnet
