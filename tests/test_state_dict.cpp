// Reading torch.save files and loading state dicts: what goes right, and the errors users see.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "io/background_writer.h"
#include "io/file.h"
#include "io/state_dict.h"
#include "io/tfrecord.h"
#include "io/torch_save.h"
#include "models/registry.h"
#include "test_util.h"
#include "train/checkpoint_info.h"

using resnet::test::input_error_of;

namespace {

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

TEST(TorchSave, ErrorsNameTheFileAndWhatWasFound) {
  resnet::test::TempDir dir;
  const auto missing = (dir.path() / "missing.pt").string();
  EXPECT_EQ(input_error_of([&] { resnet::load_tensor_dict(missing); }), missing + ": cannot open for reading");

  const auto text = (dir.path() / "text.pt").string();
  write_file(text, "hello, not a checkpoint");
  EXPECT_NE(input_error_of([&] { resnet::load_tensor_dict(text); }).find(text + ": not a torch.save file"),
            std::string::npos);

  const auto truncated = (dir.path() / "truncated.pt").string();
  c10::Dict<std::string, torch::Tensor> dict;
  dict.insert("w", torch::randn({100, 100}));
  auto bytes = torch::pickle_save(dict);
  write_file(truncated, std::string(bytes.begin(), bytes.begin() + bytes.size() / 2));
  EXPECT_NE(input_error_of([&] { resnet::load_tensor_dict(truncated); }).find(truncated + ": cannot read it"),
            std::string::npos);

  const auto list = (dir.path() / "list.pt").string();
  bytes = torch::pickle_save(c10::List<int64_t>({1, 2}));
  write_file(list, std::string(bytes.begin(), bytes.end()));
  EXPECT_NE(input_error_of([&] { resnet::load_tensor_dict(list); }).find(list + ": cannot read data.pkl"),
            std::string::npos);
}

TEST(StateDict, RoundTripsIntoAFreshModel) {
  torch::manual_seed(1);
  auto a = resnet::create_model("resnet18", 10);
  auto b = resnet::create_model("resnet18", 10);
  resnet::load_state_dict(*b, resnet::state_dict(*a), "memory");
  const auto sa = resnet::state_dict(*a), sb = resnet::state_dict(*b);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
}

TEST(StateDict, MismatchesAreListed) {
  auto model = resnet::create_model("resnet18", 10);
  auto other_classes = resnet::state_dict(*resnet::create_model("resnet18", 1000));
  const auto shape = input_error_of([&] { resnet::load_state_dict(*model, other_classes, "w.pth"); });
  EXPECT_NE(shape.find("w.pth: does not match the model"), std::string::npos) << shape;
  EXPECT_NE(shape.find("shape mismatches (2): fc.weight (file [1000, 512], model [10, 512]) fc.bias"),
            std::string::npos)
      << shape;

  auto partial = resnet::state_dict(*model);
  partial.erase(partial.begin());
  partial.emplace_back("extra.weight", torch::zeros({1}));
  const auto keys = input_error_of([&] { resnet::load_state_dict(*model, partial, "w.pth"); });
  EXPECT_NE(keys.find("missing keys (1): conv1.weight"), std::string::npos) << keys;
  EXPECT_NE(keys.find("unexpected keys (1): extra.weight"), std::string::npos) << keys;
}

namespace {

std::string run_python(const std::string& args) {
  const std::string command = std::string(RESNET_PYTHON_EXE) + " " + RESNET_SOURCE_DIR +
                              "/tests/reference/check_saved.py " + args + " 2>&1";
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  const int status = pclose(pipe);
  return (WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "" : "FAILED: ") + out;
}

}  // namespace

TEST(TorchSave, PythonOpensOurStateDictWithPlainTorchLoad) {
  resnet::test::TempDir dir;
  torch::manual_seed(3);
  auto model = resnet::create_model("resnet18", 10);
  const auto path = (dir.path() / "checkpoint.pth").string();
  const auto sd = resnet::state_dict(*model);
  resnet::save_state_dict(path, sd);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  double total = 0;
  for (const auto& [name, t] : sd) total += t.to(torch::kDouble).sum().item<double>();
  const auto out = run_python("state " + path + " resnet18 10");
  ASSERT_EQ(out.rfind("ok OrderedDict ", 0), 0u) << out;
  EXPECT_NEAR(std::stod(out.substr(15)), total, 1e-6 * std::abs(total)) << out;

  // And we read back what we wrote, bit for bit.
  const auto back = resnet::load_tensor_dict(path);
  ASSERT_EQ(back.size(), sd.size());
  for (size_t i = 0; i < sd.size(); ++i) {
    EXPECT_EQ(back[i].first, sd[i].first);
    EXPECT_TRUE(torch::equal(back[i].second, sd[i].second)) << sd[i].first;
  }
}

TEST(TorchSave, MixedDictsRoundTripAndOpenInPython) {
  resnet::test::TempDir dir;
  const auto path = (dir.path() / "resume.pt").string();
  resnet::SaveEntries entries = {{"format_version", int64_t{1}},
                                 {"big", int64_t{1} << 40},
                                 {"negative", int64_t{-5}},
                                 {"accuracy", 0.28125},
                                 {"flag", true},
                                 {"settings", std::string("{\"model\": \"resnet50\"}")},
                                 {"weights", torch::arange(12, torch::kFloat).reshape({3, 4}).t()},
                                 {"rng", torch::arange(5, torch::kUInt8)}};
  resnet::save_torch_file(path, entries, /*ordered=*/false);
  const auto back = resnet::load_torch_dict(path);
  ASSERT_EQ(back.size(), entries.size());
  EXPECT_EQ(back[1].second.toInt(), int64_t{1} << 40);
  EXPECT_EQ(back[2].second.toInt(), -5);
  EXPECT_EQ(back[3].second.toDouble(), 0.28125);
  EXPECT_EQ(back[4].second.toBool(), true);
  EXPECT_EQ(back[5].second.toStringRef(), "{\"model\": \"resnet50\"}");
  EXPECT_TRUE(torch::equal(back[6].second.toTensor(), torch::arange(12, torch::kFloat).reshape({3, 4}).t()));
  EXPECT_EQ(back[7].second.toTensor().scalar_type(), torch::kByte);
  const auto out = run_python("dict " + path);
  EXPECT_NE(out.find("big int 1099511627776"), std::string::npos) << out;
  EXPECT_NE(out.find("negative int -5"), std::string::npos) << out;
  EXPECT_NE(out.find("accuracy float 0.28125"), std::string::npos) << out;
  EXPECT_NE(out.find("flag bool True"), std::string::npos) << out;
  EXPECT_NE(out.find("weights Tensor 6.6000000000e+01"), std::string::npos) << out;
}

TEST(TorchSave, ReadsAStateDictThatPythonSavedInEitherFormat) {
  // The zip format (torch.save's default) and the legacy one of torchvision's published weights.
  resnet::test::TempDir dir;
  for (const std::string kind : {"write", "write-legacy"}) {
    SCOPED_TRACE(kind);
    const auto path = (dir.path() / (kind + ".pth")).string();
    const auto out = run_python(kind + " " + path + " resnet18 10");
    ASSERT_EQ(out.rfind("ok ", 0), 0u) << out;
    const auto tensors = resnet::load_tensor_dict(path);  // an OrderedDict, as state_dict() returns
    auto model = resnet::create_model("resnet18", 10);
    resnet::load_state_dict(*model, tensors, path);
    double total = 0;
    for (const auto& [name, t] : resnet::state_dict(*model)) total += t.to(torch::kDouble).sum().item<double>();
    EXPECT_NEAR(total, std::stod(out.substr(3)), 1e-6 * std::abs(total));
    if (kind == "write-legacy") {
      // Cut anywhere past the header: an error that says so, never a crash or a short tensor.
      const auto bytes = resnet::read_file_bytes(path);
      const auto cut = (dir.path() / "cut.pth").string();
      for (size_t keep : {size_t{40}, bytes.size() / 3, bytes.size() - 1}) {
        write_file(cut, std::string(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
        EXPECT_EQ(input_error_of([&] { resnet::load_tensor_dict(cut); }).rfind(cut + ": ", 0), 0u) << keep;
      }
    }
  }
}

TEST(TorchSave, RefusesAPickleThatWouldRunCode) {
  resnet::test::TempDir dir;
  const auto marker = dir.path() / "ran";
  for (const std::string format : {"", " legacy"}) {
    const auto path = (dir.path() / ("evil" + format.substr(format.empty() ? 0 : 1) + ".pth")).string();
    ASSERT_EQ(run_python("evil " + path + " " + marker.string() + format).rfind("ok", 0), 0u);
    const auto error = input_error_of([&] { resnet::load_tensor_dict(path); });
    EXPECT_NE(error.find("cannot rebuild posix.system"), std::string::npos) << error;
    EXPECT_FALSE(std::filesystem::exists(marker)) << "the pickle's command ran";
  }
}

TEST(File, AtomicWritesKeepTheOldFileOnFailureAndReadsNameFolders) {
  resnet::test::TempDir dir;
  const std::string path = (dir.path() / "a.txt").string();
  resnet::write_file_atomically(path, std::string("first"));
  const auto first = resnet::read_file_bytes(path);
  EXPECT_EQ(std::string(first.begin(), first.end()), "first");
  // A writer that fails half-way: the old file stays whole and no temporary file is left.
  const auto why = resnet::test::input_error_of([&] {
    resnet::write_file_atomically(path, [](std::FILE* f) {
      std::fputs("sec", f);
      return false;
    });
  });
  EXPECT_NE(why.find("a.txt is unchanged"), std::string::npos) << why;
  const auto after = resnet::read_file_bytes(path);
  EXPECT_EQ(std::string(after.begin(), after.end()), "first");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_NE(resnet::test::input_error_of([&] { resnet::read_file_bytes(dir.path().string()); }).find("is a folder"),
            std::string::npos);
  EXPECT_NE(resnet::test::input_error_of([&] { resnet::read_file_bytes(path + ".missing"); }).find("cannot open"),
            std::string::npos);
}

TEST(TorchSave, AFileTakenApartWritesTheValuesOfItsMomentWhateverChangesAfter) {
  // What train's background checkpoints rely on: the tensors are copied when the file is made,
  // so the weights may change (even on the CPU, where a copy to the CPU would be no copy) before
  // it is written.
  resnet::test::TempDir dir;
  auto weight = torch::arange(12, torch::kFloat).reshape({3, 4});
  const auto view = weight.narrow(0, 1, 2);  // a view: its own storage offset
  const resnet::TorchFile file({{"weight", weight}, {"view", view}, {"step", int64_t{7}}}, /*ordered=*/false);
  const auto want_weight = weight.clone(), want_view = view.clone();
  weight.add_(100);
  const std::string path = (dir.path() / "snapshot.pt").string();
  file.write(path);
  file.write(path);  // a second write of the same file: the same bytes
  const auto dict = resnet::load_torch_dict(path);
  ASSERT_EQ(dict.size(), 3u);
  EXPECT_TRUE(torch::equal(dict[0].second.toTensor(), want_weight));
  EXPECT_TRUE(torch::equal(dict[1].second.toTensor(), want_view));
  EXPECT_EQ(dict[2].second.toInt(), 7);
}

TEST(TfRecord, FramesWithTensorFlowsMaskedCrc32c) {
  // CRC-32C's check value (RFC 3720's and every implementation's "123456789"), its mask, and a
  // record: length, masked CRC of the length, data, masked CRC of the data.
  EXPECT_EQ(resnet::crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(resnet::crc32c("", 0), 0u);
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(resnet::masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
  const std::string record = resnet::tfrecord("abc");
  ASSERT_EQ(record.size(), 8u + 4 + 3 + 4);
  EXPECT_EQ(record.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  uint32_t length_crc = 0, data_crc = 0;
  std::memcpy(&length_crc, record.data() + 8, 4);
  std::memcpy(&data_crc, record.data() + 15, 4);
  EXPECT_EQ(length_crc, resnet::masked_crc32c(record.data(), 8));
  EXPECT_EQ(record.substr(12, 3), "abc");
  EXPECT_EQ(data_crc, resnet::masked_crc32c("abc", 3));
}

TEST(BackgroundWriter, RunsJobsInOrderBesideTheCallerAndReportsAFailureOnce) {
  std::vector<int> done;
  std::atomic<bool> release{false};
  {
    resnet::BackgroundWriter writer;
    writer.submit([&] {
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      done.push_back(1);
    });
    writer.submit([&] { done.push_back(2); });  // waits behind the first, which still runs
    EXPECT_TRUE(done.empty());                  // the caller was not held up by either
    release = true;
    writer.wait();
    EXPECT_EQ(done, (std::vector<int>{1, 2}));
    // A third submit while one waits: held until there is room (one running, one waiting at most).
    release = false;
    writer.submit([&] {
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      done.push_back(3);
    });
    writer.submit([&] { done.push_back(4); });
    std::atomic<bool> fifth_submitted{false};
    std::thread later([&] {
      writer.submit([&] { done.push_back(5); });
      fifth_submitted = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(fifth_submitted);
    release = true;
    later.join();
    writer.wait();
    EXPECT_EQ(done, (std::vector<int>{1, 2, 3, 4, 5}));

    // A job that fails: the jobs behind it are dropped; the next wait() throws its error, once.
    release = false;
    writer.submit([&] {
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      throw resnet::InputError("resume.pt.tmp: write failed (disk full?)");
    });
    writer.submit([&] { done.push_back(6); });
    release = true;
    EXPECT_EQ(resnet::test::input_error_of([&] { writer.wait(); }), "resume.pt.tmp: write failed (disk full?)");
    writer.wait();  // reported already
    EXPECT_EQ(done.size(), 5u);
    // The writer still works after a failure, and submit() reports one as wait() does: the second
    // submit below waits until the failing job runs, the third (if the second got in) until it ends.
    writer.submit([] { throw resnet::InputError("second failure"); });
    const auto why = resnet::test::input_error_of([&] {
      writer.submit([&] { done.push_back(7); });
      writer.submit([&] { done.push_back(7); });
    });
    EXPECT_EQ(why, "second failure");
    writer.wait();
    EXPECT_EQ(done.size(), 5u);  // job 6 and any 7 were dropped behind the failures
  }
}

TEST(CheckpointInfo, ParsesWhatTrainWritesAndRefusesTheRestByName) {
  const auto info = resnet::parse_best_model_info(
      R"({"arch": "resnet18", "num_classes": 2, "classes": ["a", "b"], "image_size": 32, "accuracy": 0.5, "epoch": 3})",
      "ck.json");
  EXPECT_EQ(info.arch, "resnet18");
  EXPECT_EQ(info.classes, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(info.image_size, 32);
  EXPECT_EQ(info.epoch, 3);
  EXPECT_EQ(info.test_crop_pct, 0.875);  // absent: the sample's
  EXPECT_EQ(info.holdout, -1);            // absent: not recorded
  EXPECT_EQ(resnet::parse_best_model_info(R"({"arch": "r", "classes": ["x"], "holdout": 5000})", "ck.json").holdout, 5000);
  EXPECT_EQ(resnet::parse_best_model_info(R"({"arch": "resnet50", "classes": ["x"]})", "ck.json").image_size, 224);
  EXPECT_EQ(resnet::parse_best_model_info(R"({"arch": "r", "classes": ["x"], "test_crop_pct": 1})", "ck.json").test_crop_pct,
            1.0);
  // Each refused with the file's name and what was wrong (a size of 0, a negative epoch and a
  // size of 1e30, converted to an integer out of range, were taken before).
  const std::pair<const char*, const char*> bad[] = {
      {"[1, 2]", "expected a JSON object, found array"},
      {"{\"arch\": \"resnet18\"}", "classes"},
      {"{\"arch\": \"resnet18\", \"classes\": []}", "\"classes\" must list 1 to 100,000 names (found 0)"},
      {"{\"arch\": \"resnet18\", \"classes\": [\"a\"], \"image_size\": 0}",
       "\"image_size\" must be 1 to 65,536 pixels (found 0)"},
      {"{\"arch\": \"resnet18\", \"classes\": [\"a\"], \"epoch\": -1}", "\"epoch\" must not be negative"},
      {"{\"arch\": \"r\", \"classes\": [\"a\"], \"holdout\": -3}", "\"holdout\" must not be negative (found -3)"},
      {"{\"arch\": \"r\", \"classes\": [\"a\"], \"holdout\": 2.5}", "\"holdout\" must be an integer"},
      {"{\"arch\": \"r\", \"classes\": [\"a\"], \"test_crop_pct\": 0}", "\"test_crop_pct\" must be above 0 and at most 1 (found 0)"},
      {"{\"arch\": \"r\", \"classes\": [\"a\"], \"test_crop_pct\": \"1\"}", "type must be number"},
      {"{\"arch\": 5, \"classes\": [\"a\"]}", "type must be string"},
      {"{\"arch\": \"r\", \"classes\": [\"a\"], \"image_size\": 1e30}", "\"image_size\" must be an integer (found 1e+30)"},
      {"{", "parse error"},
  };
  for (const auto& [text, want] : bad) {
    try {
      resnet::parse_best_model_info(text, "ck.json");
      ADD_FAILURE() << "accepted " << text;
    } catch (const resnet::InputError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind("ck.json: not a checkpoint description: ", 0), 0u) << what;
      EXPECT_NE(what.find(want), std::string::npos) << what;
    }
  }
}

TEST(TorchSave, FormerFuzzCrashesAreRefusedInOurWords) {
  // Inputs fuzz/fuzz_torch_save found (fuzz/regressions/torch_save/): each once escaped as
  // LibTorch's internal assertion (APPEND to a string) or allocated what the file never held.
  const std::filesystem::path dir = std::filesystem::path(RESNET_SOURCE_DIR) / "fuzz/regressions/torch_save";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ++files;
    const std::string path = entry.path().string();
    try {
      resnet::load_torch_dict(path);
      ADD_FAILURE() << path << " was read";
    } catch (const resnet::InputError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(files, 0);
}
