#include "data/download.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "core/log.h"
#include "data/md5.h"

#ifdef RESNET_WITH_CURL
#include <curl/curl.h>
#endif

namespace resnet {
namespace fs = std::filesystem;

#ifndef RESNET_WITH_CURL

bool download_supported() { return false; }
void download_file(const std::string&, const DownloadOptions&) {
  throw DownloadError("this build has no download support (libcurl was not found when it was configured)");
}

#else

bool download_supported() { return true; }

namespace {

struct Transfer {
  FILE* file = nullptr;
  bool progress = false;
  curl_off_t resume_from = 0;
  std::chrono::steady_clock::time_point last_draw;
};

size_t write_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  return std::fwrite(data, size, count, t->file) * size;
}

int draw_progress(void* user, curl_off_t total, curl_off_t now, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  const auto clock = std::chrono::steady_clock::now();
  if (!t->progress || total <= 0 || clock - t->last_draw < std::chrono::milliseconds(200)) return 0;
  t->last_draw = clock;
  constexpr int kWidth = 40;
  const double done = static_cast<double>(t->resume_from + now) / static_cast<double>(t->resume_from + total);
  std::string bar(static_cast<size_t>(done * kWidth), '#');
  bar.resize(kWidth, '.');
  char line[128];
  std::snprintf(line, sizeof line, "[%s] %5.1f%% of %.1f MB", bar.c_str(), 100.0 * done,
                static_cast<double>(t->resume_from + total) / 1e6);
  log_progress(line);
  return 0;
}

enum class Outcome { kComplete, kRetry, kNextUrl };

// One attempt at `url`, appending to `part` from its current size.
Outcome attempt(const std::string& url, const std::string& part, const DownloadOptions& o, std::string& why) {
  std::error_code ec;
  const auto have = fs::exists(part) ? static_cast<curl_off_t>(fs::file_size(part, ec)) : 0;
  Transfer t;
  t.progress = o.progress;
  t.resume_from = have;
  t.file = std::fopen(part.c_str(), have > 0 ? "ab" : "wb");
  if (!t.file) {
    why = part + ": cannot open for writing";
    return Outcome::kNextUrl;
  }
  CURL* curl = curl_easy_init();
  char error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 0L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, o.connect_timeout_s);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, o.stall_timeout_s);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, draw_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  if (have > 0) curl_easy_setopt(curl, CURLOPT_RESUME_FROM_LARGE, have);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  std::fclose(t.file);
  if (o.progress) log_progress("");

  if (status == 416 && have > 0) return Outcome::kComplete;  // nothing left to send: we have it all
  if (status >= 400) {
    fs::resize_file(part, static_cast<uintmax_t>(have), ec);  // drop the error page, keep what we had
    why = url + ": HTTP " + std::to_string(status);
    return status >= 500 ? Outcome::kRetry : Outcome::kNextUrl;
  }
  if (rc == CURLE_OK && have > 0 && status == 200) {
    // The server ignored the range and sent the whole file after our partial copy: start over.
    fs::remove(part, ec);
    why = url + ": server does not resume downloads; starting again";
    return Outcome::kRetry;
  }
  if (rc != CURLE_OK) {
    why = url + ": " + (error[0] ? error : curl_easy_strerror(rc));
    // Unknown host, refused connection: the next mirror; a transfer cut short: resume.
    return rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_UNSUPPORTED_PROTOCOL ? Outcome::kNextUrl
                                                                                : Outcome::kRetry;
  }
  return Outcome::kComplete;
}

}  // namespace

void download_file(const std::string& dest, const DownloadOptions& o) {
  static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!initialised) throw DownloadError("libcurl failed to initialise");
  const std::string part = dest + ".part";
  std::vector<std::string> tried;
  for (const auto& url : o.urls) {
    int delay = o.retry_delay_ms;
    for (int i = 0; i < o.attempts_per_url; ++i) {
      std::string why;
      const Outcome outcome = attempt(url, part, o, why);
      if (outcome == Outcome::kComplete) {
        if (!o.md5.empty()) {
          const std::string got = md5_file(part);
          if (got != o.md5) {
            std::error_code ec;
            fs::remove(part, ec);
            throw DownloadError(url + ": MD5 of the download is " + got + ", expected " + o.md5 +
                                "; the file was deleted (a wrong or damaged copy)");
          }
        }
        fs::rename(part, dest);
        return;
      }
      tried.push_back(why);
      if (outcome == Outcome::kNextUrl) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
      delay *= 2;
    }
  }
  // A partial file with bytes in it stays for the next run to resume; an empty one is no use.
  std::error_code ec;
  if (fs::exists(part, ec) && fs::file_size(part, ec) == 0) fs::remove(part, ec);
  std::string message = "download failed:";
  for (const auto& why : tried) message += "\n  " + why;
  throw DownloadError(message);
}

#endif

}  // namespace resnet
