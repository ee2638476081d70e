// HTTP(S) downloads with libcurl: mirrors tried in order, retries that resume a partial file
// with an HTTP Range request, an optional MD5 check, a progress bar on a terminal.
//
// The file is written as `<dest>.part` and renamed to `dest` only once complete and checked,
// so `dest` never holds a partial or wrong download. A digest mismatch deletes the partial file;
// a failed download keeps it only when it holds bytes (the next run resumes from them).
// Errors (DownloadError) say which URLs were tried and what each answered.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace resnet {

class DownloadError : public std::runtime_error {
 public:
  explicit DownloadError(const std::string& message) : std::runtime_error(message) {}
};

struct DownloadOptions {
  std::vector<std::string> urls;  // mirrors, tried in order
  std::string md5;                // expected lower-case hex digest; empty: not checked
  int attempts_per_url = 4;       // connection failures and stalls are retried, resuming
  int retry_delay_ms = 2000;      // doubled after each failed attempt
  long connect_timeout_s = 20;
  long stall_timeout_s = 60;  // abort an attempt that moves no byte for this long
  bool progress = false;      // draw a progress bar on stderr
};

// True when this build can download (libcurl was found).
bool download_supported();

void download_file(const std::string& dest, const DownloadOptions& options);

}  // namespace resnet
