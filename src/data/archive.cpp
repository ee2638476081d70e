#include "data/archive.h"

#include <archive.h>
#include <archive_entry.h>

#include <filesystem>
#include <memory>

#include "core/error.h"

namespace resnet {
namespace fs = std::filesystem;

namespace {

// libarchive's message for its last error; it may have none (NULL), seen with damaged zips.
std::string error_of(archive* a) {
  const char* e = archive_error_string(a);
  return e ? e : "unknown error";
}

std::string pathname_of(archive_entry* entry) {
  const char* name = archive_entry_pathname(entry);
  return name ? name : "";
}

using ReadArchive = std::unique_ptr<struct archive, int (*)(struct archive*)>;

ReadArchive open_reader(const std::string& path) {
  ReadArchive a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_all(a.get());
  constexpr size_t kBlock = 1 << 16;
  if (archive_read_open_filename(a.get(), path.c_str(), kBlock) != ARCHIVE_OK)
    throw InputError(path + ": cannot open as an archive: " + error_of(a.get()));
  return a;
}

bool escapes(const std::string& name) {
  if (name.empty()) return false;
  if (name[0] == '/' || (name.size() > 1 && name[1] == ':')) return true;
  for (const auto& part : fs::path(name))
    if (part == "..") return true;
  return false;
}

}  // namespace

void extract_archive(const std::string& path, const std::string& dest_dir) {
  // Pass 1: read every header (and the data, so that corruption anywhere shows) before writing.
  {
    ReadArchive a = open_reader(path);
    archive_entry* entry;
    int rc;
    while ((rc = archive_read_next_header(a.get(), &entry)) == ARCHIVE_OK) {
      const std::string name = pathname_of(entry);
      if (name.empty()) throw InputError(path + ": corrupt archive: an entry without a name");
      if (escapes(name))
        throw InputError(path + ": refusing entry '" + name + "' (an absolute path or '..' would write outside the folder)");
      const char* link = archive_entry_hardlink(entry);
      if (!link) link = archive_entry_symlink(entry);
      if (link && escapes(link))
        throw InputError(path + ": refusing entry '" + name + "', a link to '" + link + "' outside the folder");
      if (archive_read_data_skip(a.get()) != ARCHIVE_OK)
        throw InputError(path + ": corrupt archive at '" + name + "': " + error_of(a.get()));
    }
    if (rc != ARCHIVE_EOF) throw InputError(path + ": corrupt archive: " + error_of(a.get()));
  }

  // Pass 2: write, under an absolute, normalised prefix (libarchive refuses '..' anywhere in the
  // final path, and ours may be relative such as ../data). Absolute entries were refused above.
  const fs::path root = fs::absolute(dest_dir).lexically_normal();
  fs::create_directories(root);
  ReadArchive a = open_reader(path);
  ReadArchive out(archive_write_disk_new(), archive_write_free);
  archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                ARCHIVE_EXTRACT_SECURE_SYMLINKS);
  archive_entry* entry;
  int rc;
  while ((rc = archive_read_next_header(a.get(), &entry)) == ARCHIVE_OK) {
    const std::string name = pathname_of(entry);
    archive_entry_set_pathname(entry, (root / name).string().c_str());
    if (const char* link = archive_entry_hardlink(entry))
      archive_entry_set_hardlink(entry, (root / link).string().c_str());
    if (archive_write_header(out.get(), entry) != ARCHIVE_OK)
      throw InputError(path + ": cannot write '" + name + "': " + error_of(out.get()));
    const void* buf;
    size_t size;
    la_int64_t offset;
    int r;
    while ((r = archive_read_data_block(a.get(), &buf, &size, &offset)) == ARCHIVE_OK)
      if (archive_write_data_block(out.get(), buf, size, offset) != ARCHIVE_OK)
        throw InputError(path + ": cannot write '" + name + "': " + error_of(out.get()));
    if (r != ARCHIVE_EOF) throw InputError(path + ": corrupt archive at '" + name + "': " + error_of(a.get()));
    if (archive_write_finish_entry(out.get()) != ARCHIVE_OK)
      throw InputError(path + ": cannot finish '" + name + "': " + error_of(out.get()));
  }
  if (rc != ARCHIVE_EOF) throw InputError(path + ": corrupt archive: " + error_of(a.get()));
}

}  // namespace resnet
