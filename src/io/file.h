// Checked file I/O, in one place: atomic writes (a crash at any moment leaves the old complete
// file or the new one, never a torn one) and whole-file reads, with errors that name the file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace resnet {

// Writes `path` atomically: `write` fills a temporary file beside it (returning false, or
// throwing, on failure), which is flushed, fsynced and renamed over `path`; the folder is fsynced
// too. On any failure the temporary file is removed, `path` is untouched, and InputError says so.
void write_file_atomically(const std::string& path, const std::function<bool(std::FILE*)>& write);

// The same for a string's bytes.
void write_file_atomically(const std::string& path, const std::string& text);

// The whole file; InputError naming it when it is missing, a folder, or unreadable.
std::vector<uint8_t> read_file_bytes(const std::string& path);

}  // namespace resnet
