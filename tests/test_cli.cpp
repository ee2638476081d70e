// The `resnet` command line as users meet it: exit codes, messages, the bench JSON line.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <torch/cuda.h>

#include "cli/console_reporter.h"
#include "test_util.h"

using resnet::test::run_resnet;

TEST(Cli, UnknownModelExitsWith2AndListsTheKnownOnes) {
  const auto r = run_resnet("bench --model resnet51 --device cpu");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown model 'resnet51' (known: resnet18, resnet34, resnet50"), std::string::npos)
      << r.output;
}

TEST(Cli, BadFlagsExitWith2) {
  EXPECT_EQ(run_resnet("").exit_code, 2);
  EXPECT_EQ(run_resnet("bench --no-such-flag").exit_code, 2);
  EXPECT_EQ(run_resnet("bench --batch-size many").exit_code, 2);
  const auto zero = run_resnet("bench --batch-size 0 --device cpu");
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.output.find("--batch-size must be at least 1"), std::string::npos) << zero.output;
  const auto dml = run_resnet("bench --device dml");
  EXPECT_EQ(dml.exit_code, 2);
  EXPECT_NE(dml.output.find("DirectML exists only on Windows"), std::string::npos) << dml.output;
}

TEST(Cli, TrainRefusesBadUsageBeforeAnyWork) {
  const auto model = run_resnet("train --model resnet51 --data /nonexistent");
  EXPECT_EQ(model.exit_code, 2) << model.output;
  EXPECT_NE(model.output.find("unknown model 'resnet51'"), std::string::npos) << model.output;
  const auto trace = run_resnet("train --trace maybe --data /nonexistent");
  EXPECT_EQ(trace.exit_code, 2) << trace.output;
  EXPECT_NE(trace.output.find("--trace takes True or False (got 'maybe')"), std::string::npos) << trace.output;
  const auto data = run_resnet("train --model resnet18 --data /nonexistent --device cpu");
  EXPECT_EQ(data.exit_code, 1) << data.output;
  EXPECT_NE(data.output.find("/nonexistent: no such folder (--data)"), std::string::npos) << data.output;
  // the recipe flags (issue 12): each bad value named with its flag, exit 2, before the data is read
  const std::vector<std::pair<std::string, std::string>> recipe{
      {"--crop-scale 0.9,0.5", "--crop-scale must be MIN,MAX with 0 < MIN <= MAX <= 1 (got 0.9,0.5)"},
      {"--crop-scale 0.5", "--crop-scale must be MIN,MAX"},
      {"--lr-schedule multistep", "--lr-schedule multistep needs --lr-milestones"},
      {"--lr-schedule cosine2", "--lr-schedule must be constant, step, multistep, cosine or onecycle"},
      {"--lr-schedule onecycle --warmup-epochs 1", "leave --warmup-epochs out"},
      {"--nesterov --momentum 0", "--nesterov needs a --momentum above 0"},
      {"--label-smoothing 2", "--label-smoothing must be between 0 and 1 (got 2)"},
      {"--lr-scale-batch -1", "--lr-scale-batch must be at least 0"},
      {"--mixup -0.2", "--mixup must be an alpha of 0 (off) or more, e.g. 0.2 (got -0.2)"},
      {"--cutmix nan", "--cutmix must be an alpha of 0 (off) or more"},
      {"--clip-grad-norm -1", "--clip-grad-norm must be 0 (off) or a positive norm, e.g. 1 (got -1)"},
      {"--recipe nope", "--recipe must be one of fast, sample (got 'nope')"},
      {"--recipe fast --label-smoothing 3", "--label-smoothing must be between 0 and 1 (got 3)"}};
  for (const auto& [flags, message] : recipe) {
    const auto r = run_resnet("train --model resnet18 --data /nonexistent --device cpu " + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << flags << ": " << r.output;
  }
  // a recipe's own values pass the checks (its fp16 overridden for the CPU): the data is the first problem
  const auto fast = run_resnet("train --model resnet18 --data /nonexistent --device cpu --recipe fast --amp auto");
  EXPECT_EQ(fast.exit_code, 1) << fast.output;
  EXPECT_NE(fast.output.find("/nonexistent: no such folder (--data)"), std::string::npos) << fast.output;
  const auto missing = run_resnet("predict --model resnet18 --checkpoint /nonexistent/checkpoint.pth --image x.jpg");
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("/nonexistent/checkpoint.pth: no such checkpoint"), std::string::npos) << missing.output;
}

TEST(Cli, HelpListsTheCommands) {
  const auto r = run_resnet("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* command : {"data", "train", "test", "predict", "bench"})
    EXPECT_NE(r.output.find(command), std::string::npos) << command;
  EXPECT_EQ(run_resnet("bench --help").exit_code, 0);
}

TEST(Cli, BenchPrintsOneJsonLine) {
  // The sample's underscore spelling is accepted too.
  const auto r = run_resnet("bench --model resnet18 --batch_size 2 --image-size 32 --steps 2 --warmup 1 --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j.at("model"), "resnet18");
  EXPECT_EQ(j.at("params"), 11181642);
  EXPECT_EQ(j.at("device"), "cpu");
  EXPECT_EQ(j.at("batch_size"), 2);
  EXPECT_EQ(j.at("image_size"), 32);
  EXPECT_EQ(j.at("mode"), "train");
  EXPECT_GT(j.at("img_per_s").get<double>(), 0.0);
  EXPECT_EQ(j.at("peak_mem_mib").get<double>(), 0.0);

  const auto inf = run_resnet("bench --model squeezenet1_1 --inference --batch-size 2 --image-size 64 --steps 2 --device cpu");
  ASSERT_EQ(inf.exit_code, 0) << inf.output;
  EXPECT_EQ(nlohmann::json::parse(inf.output).at("mode"), "inference");
}

// ---- First contact (issue 7): the rough edges a new user meets. ----

namespace {

namespace fs = std::filesystem;

const std::string kSample = std::string(RESNET_SOURCE_DIR) + "/assets/cifar10-sample";
const std::string kImage = kSample + "/test/cat/0000.jpg";

// `resnet <args>` run from the folder `dir` (for the defaults that are relative paths).
resnet::test::CommandResult run_resnet_in(const fs::path& dir, const std::string& args) {
  return resnet::test::run_shell("cd '" + dir.string() + "' && " + RESNET_BINARY + " " + args + " 2>&1");
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The --flags that `text` names but `resnet <command> --help` does not list.
std::vector<std::string> flags_the_command_lacks(const std::string& text, const std::string& command) {
  const std::string help = run_resnet(command + " --help").output;
  auto is_name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; };
  auto listed = [&](const std::string& flag) {
    for (size_t at = help.find(flag); at != std::string::npos; at = help.find(flag, at + 1))
      if (at + flag.size() == help.size() || !is_name_char(help[at + flag.size()])) return true;
    return false;
  };
  std::vector<std::string> lacking;
  for (size_t at = text.find("--"); at != std::string::npos; at = text.find("--", at + 2)) {
    size_t end = at + 2;
    while (end < text.size() && is_name_char(text[end])) ++end;
    const std::string flag = text.substr(at, end - at);
    if (flag.size() > 2 && !listed(flag)) lacking.push_back(flag);
    at = end - 2;
  }
  return lacking;
}

// One small trained model in <dir>/checkpoints/resnet18 (resnet18 at 32 pixels, one step on two
// images of each of the sample's classes), made once per process.
const fs::path& trained_checkpoints() {
  static resnet::test::TempDir dir;
  static const bool trained = [] {
    for (const char* split : {"train", "test"})
      for (const auto& class_dir : fs::directory_iterator(kSample + "/test")) {
        const fs::path to = dir.path() / "tiny" / split / class_dir.path().filename();
        fs::create_directories(to);
        for (const char* image : {"0000.jpg", "0001.jpg"}) fs::copy_file(class_dir.path() / image, to / image);
      }
    const auto r = run_resnet("train --model resnet18 --data " + (dir.path() / "tiny").string() +
                              " --image-size 32 --epochs 1 -b 100 --device cpu --save-model --checkpoint-dir " +
                              (dir.path() / "checkpoints").string());
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.exit_code == 0;
  }();
  EXPECT_TRUE(trained);
  return dir.path();
}

}  // namespace

TEST(CliFirstContact, TrainRefusesBadNumbersWithExit2) {
  // Each would crash (--log-every 0: division by zero) or train nonsense; /nonexistent data
  // would give exit 1 if the flag got through.
  const std::pair<const char*, const char*> cases[] = {
      {"--log-every 0", "error: --log-every must be at least 1"},
      {"-p 0", "error: --log-every must be at least 1"},
      {"--epochs 0", "error: --epochs must be at least 1"},
      {"--batch-size 0", "error: --batch-size must be at least 1"},
      {"-b -3", "error: --batch-size must be at least 1"},
      {"--image-size 8", "error: --image-size must be at least 32"},
      {"--lr -1", "error: --learning-rate (--lr) must not be negative (got -1)"},
      {"--learning-rate nan", "error: --learning-rate (--lr) must not be negative (got nan)"},
      {"--momentum -5", "error: --momentum must not be negative (got -5)"},
      {"--weight-decay -0.1", "error: --weight-decay (--wd) must not be negative (got -0.1)"},
      {"--wd -1", "error: --weight-decay (--wd) must not be negative (got -1)"},
      {"--max-steps -1", "error: --max-steps must be at least 0"},
  };
  for (const auto& [flags, message] : cases) {
    const auto r = run_resnet(std::string("train --data /nonexistent --device cpu ") + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.output;
    EXPECT_TRUE(contains(r.output, message)) << flags << ": " << r.output;
  }
  const auto test = run_resnet("test --batch-size 0 --data /nonexistent");
  EXPECT_EQ(test.exit_code, 2) << test.output;
  EXPECT_TRUE(contains(test.output, "error: --batch-size must be at least 1")) << test.output;
}

TEST(CliFirstContact, ImageNetValFlagsGoTogether) {
  resnet::test::TempDir tmp;
  const auto alone = run_resnet("data --imagenet-val " + tmp.path().string());
  EXPECT_EQ(alone.exit_code, 2) << alone.output;
  EXPECT_TRUE(contains(alone.output, "error: --imagenet-val needs --devkit")) << alone.output;
  const auto kit = run_resnet("data --devkit " + (tmp.path() / "kit.tar.gz").string());
  EXPECT_EQ(kit.exit_code, 2) << kit.output;
  EXPECT_TRUE(contains(kit.output, "--devkit requires --imagenet-val")) << kit.output;
  const auto missing = run_resnet("data --imagenet-val " + tmp.path().string() + " --devkit " +
                                  (tmp.path() / "kit.tar.gz").string());
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_TRUE(contains(missing.output, "kit.tar.gz: no such file or folder (--devkit)")) << missing.output;
}

TEST(CliFirstContact, DataRetriesZeroSaysTheRangeReadably) {
  resnet::test::TempDir tmp;
  const auto r = run_resnet("data --retries 0 --data " + (tmp.path() / "d").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "error: --retries must be at least 1 (got 0)")) << r.output;
  EXPECT_LT(r.output.size(), 200u) << r.output;
  const auto delay = run_resnet("data --retry-delay-ms -1 --data " + (tmp.path() / "d").string());
  EXPECT_EQ(delay.exit_code, 2) << delay.output;
  EXPECT_TRUE(contains(delay.output, "error: --retry-delay-ms must be at least 0")) << delay.output;
  EXPECT_FALSE(fs::exists(tmp.path() / "d"));
}

TEST(CliFirstContact, OfflineDataLeavesNothingBehind) {
  resnet::test::TempDir tmp;
  // Port 1 on this machine: nothing listens there, the connection is refused at once.
  const std::string offline = " --retries 1 --retry-delay-ms 0 --url http://127.0.0.1:1/cifar-10-binary.tar.gz";
  const fs::path fresh = tmp.path() / "fresh";
  const auto r = run_resnet("data --data " + fresh.string() + offline);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "error: download failed")) << r.output;
  EXPECT_FALSE(fs::exists(fresh)) << "the folder made for the download stays";
  const fs::path existing = tmp.path() / "existing";
  fs::create_directories(existing);
  EXPECT_EQ(run_resnet("data --data " + existing.string() + offline).exit_code, 1);
  ASSERT_TRUE(fs::is_directory(existing)) << "a folder the user had was removed";
  EXPECT_TRUE(fs::is_empty(existing)) << fs::directory_iterator(existing)->path();
  // A missing --archive: the file named, exit 1 (a bad input file), no folder made.
  const auto archive = run_resnet("data --data " + fresh.string() + " --archive " + (tmp.path() / "no.tar.gz").string());
  EXPECT_EQ(archive.exit_code, 1) << archive.output;
  EXPECT_TRUE(contains(archive.output, "error: " + (tmp.path() / "no.tar.gz").string() + ": no such file (--archive)"))
      << archive.output;
  EXPECT_FALSE(fs::exists(fresh));
}

TEST(CliFirstContact, UnknownCommandsAndHelp) {
  const auto typo = run_resnet("trian --epochs 1");
  EXPECT_EQ(typo.exit_code, 2) << typo.output;
  EXPECT_TRUE(contains(typo.output, "error: unknown command 'trian' (did you mean 'train'?)")) << typo.output;
  const auto far = run_resnet("frobnicate");
  EXPECT_EQ(far.exit_code, 2) << far.output;
  EXPECT_TRUE(contains(far.output, "error: unknown command 'frobnicate' (the commands are data, train, test, predict, export, bench or plot)"))
      << far.output;
  const auto none = run_resnet("");
  EXPECT_EQ(none.exit_code, 2) << none.output;
  EXPECT_TRUE(contains(none.output, "error: a command is required: data, train, test, predict, export, bench or plot")) << none.output;

  const auto help = run_resnet("help train");
  EXPECT_EQ(help.exit_code, 0) << help.output;
  EXPECT_TRUE(contains(help.output, "--log-every")) << help.output;
  EXPECT_TRUE(contains(help.output, "resnet train")) << help.output;
  EXPECT_EQ(help.output, run_resnet("train --help").output);
  const auto all = run_resnet("help");
  EXPECT_EQ(all.exit_code, 0) << all.output;
  EXPECT_EQ(all.output, run_resnet("--help").output);
  EXPECT_TRUE(contains(all.output, "predict")) << all.output;
  const auto bad = run_resnet("help tarin");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_TRUE(contains(bad.output, "error: unknown command 'tarin' (did you mean 'train'?)")) << bad.output;
}

TEST(CliFirstContact, EveryParseErrorSaysErrorAndMisspeltFlagsGetASuggestion) {
  const std::pair<const char*, const char*> cases[] = {
      {"train --batchsize 4", "error: unknown flag --batchsize for resnet train (did you mean --batch-size?)"},
      {"train --learningrate 0.1", "error: unknown flag --learningrate for resnet train (did you mean --learning-rate?)"},
      {"train --epoch 3", "error: unknown flag --epoch for resnet train (did you mean --epochs?)"},
      {"train --save_modle", "error: unknown flag --save_modle for resnet train (did you mean --save-model?)"},
      {"bench --batch=4", "error: unknown flag --batch for resnet bench (did you mean --batch-size?)"},
      {"predict --imgae x.jpg", "error: unknown flag --imgae for resnet predict (did you mean --image?)"},
      {"bench --no-such-flag", "error: unknown flag --no-such-flag for resnet bench (resnet bench --help"},
      {"predict x.jpg", "error: unexpected argument 'x.jpg': resnet predict takes flags only"},
      {"predict", "error: --image is required"},
      {"bench --batch-size many", "error: "},
      {"train --epochs 1.5", "error: "},
      {"--no-such-flag", "error: "},
  };
  for (const auto& [args, message] : cases) {
    const auto r = run_resnet(args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
    EXPECT_EQ(r.output.rfind(message, 0), 0u) << args << ": " << r.output;
  }
}

TEST(CliFirstContact, ShortFormsFromTheImageNetExampleAndTimm) {
  // -b for the batch size and -a/--arch for the model, in every command that has them.
  const auto r = run_resnet("bench -a resnet18 -b 2 --image-size 32 --steps 1 --warmup 0 --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output).at("batch_size"), 2);
  EXPECT_EQ(nlohmann::json::parse(r.output).at("model"), "resnet18");
  for (const char* command : {"train", "test", "bench"}) {
    const auto help = run_resnet(std::string(command) + " --help").output;
    EXPECT_TRUE(contains(help, "-b")) << command << help;
  }
  const auto train = run_resnet("train --help").output;
  for (const char* flag : {"--wd", "--print-freq", "--resume", "--arch"}) EXPECT_TRUE(contains(train, flag)) << flag;
}

TEST(CliFirstContact, TestWithoutDataSaysHowToGetIt) {
  resnet::test::TempDir tmp;
  const auto r = run_resnet_in(tmp.path(), "test --model resnet18");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "error: data/cifar10: no such folder; run `resnet data`")) << r.output;
  EXPECT_TRUE(contains(r.output, "--data assets/cifar10-sample")) << r.output;
  EXPECT_EQ(flags_the_command_lacks(r.output, "test"), std::vector<std::string>{}) << r.output;
  // A --data the user gave keeps the plain message.
  const auto given = run_resnet_in(tmp.path(), "test --data elsewhere");
  EXPECT_TRUE(contains(given.output, "error: elsewhere: no such folder (--data)")) << given.output;
}

TEST(CliFirstContact, BareStateDictAdviceNamesOnlyFlagsTheCommandHas) {
  resnet::test::TempDir tmp;
  const fs::path pth = tmp.path() / "model.pth";
  fs::copy_file(trained_checkpoints() / "checkpoints" / "resnet18" / "checkpoint.pth", pth);
  for (const std::string& command : {"predict --image " + kImage, "test --data " + kSample}) {
    const auto r = run_resnet(command + " --checkpoint " + pth.string() + " --device cpu");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(contains(r.output, "error: " + (tmp.path() / "model.json").string() + ": missing")) << r.output;
    const std::string name = command.substr(0, command.find(' '));
    EXPECT_EQ(flags_the_command_lacks(r.output, name), std::vector<std::string>{}) << r.output;
  }
  // The advice works: the JSON it describes, written by hand, makes the state dict usable.
  std::ofstream(tmp.path() / "model.json")
      << R"({"arch": "resnet18", "classes": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"], "image_size": 32})";
  const auto r = run_resnet("predict --image " + kImage + " --checkpoint " + pth.string() + " --device cpu");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(CliFirstContact, PredictTakesAFolderAndNamesWhatIsMissing) {
  const fs::path ck = trained_checkpoints() / "checkpoints";
  const std::string base = "predict --model resnet18 --device cpu --checkpoint-dir " + ck.string();
  const std::string folder = kSample + "/test/cat";
  const auto r = run_resnet(base + " --image " + folder);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(folder)) files += entry.path().extension() == ".jpg";
  size_t headers = 0;
  for (size_t at = r.output.find(folder + "/"); at != std::string::npos; at = r.output.find(folder + "/", at + 1)) ++headers;
  EXPECT_EQ(headers, files) << r.output;
  EXPECT_TRUE(contains(r.output, folder + "/0000.jpg:\n")) << r.output;

  resnet::test::TempDir tmp;
  const auto empty = run_resnet(base + " --image " + tmp.path().string());
  EXPECT_EQ(empty.exit_code, 1) << empty.output;
  EXPECT_TRUE(contains(empty.output, "error: " + tmp.path().string() + ": a folder with no .jpg, .jpeg or .png file"))
      << empty.output;
  const auto missing = run_resnet(base + " --image " + (tmp.path() / "x.jpg").string());
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_TRUE(contains(missing.output, "error: " + (tmp.path() / "x.jpg").string() + ": no such file (--image)"))
      << missing.output;
}

TEST(CliFirstContact, MissingCheckpointNamesTheOnesThatExist) {
  resnet::test::TempDir tmp;
  const fs::path trained = trained_checkpoints() / "checkpoints" / "resnet18";
  fs::create_directories(tmp.path() / "checkpoints");
  fs::copy(trained, tmp.path() / "checkpoints" / "resnet18");
  for (const std::string& command : {"predict --image " + kImage, "test --data " + kSample}) {
    const auto r = run_resnet_in(tmp.path(), command + " --device cpu");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(contains(r.output,
                         "error: checkpoints/resnet50/checkpoint.pth: no such checkpoint; found "
                         "checkpoints/resnet18/checkpoint.pth (pass --model resnet18)"))
        << r.output;
  }
  // Nothing there at all.
  const auto nothing = run_resnet("predict --image " + kImage + " --checkpoint-dir " + (tmp.path() / "none").string());
  EXPECT_EQ(nothing.exit_code, 1) << nothing.output;
  EXPECT_TRUE(contains(nothing.output, "no such checkpoint (run `resnet train --save-model` first, or pass --checkpoint)"))
      << nothing.output;

  // --model and the checkpoint's architecture differ: a warning, and the checkpoint's is used.
  fs::copy(trained, tmp.path() / "checkpoints" / "resnet34");
  const auto renamed = run_resnet_in(tmp.path(), "predict --model resnet34 --device cpu --image " + kImage);
  EXPECT_EQ(renamed.exit_code, 0) << renamed.output;
  EXPECT_TRUE(contains(renamed.output, "warning: --model resnet34 was given, but checkpoints/resnet34/checkpoint.pth "
                                       "holds a resnet18"))
      << renamed.output;
  const auto explicit_path = run_resnet_in(
      tmp.path(), "test --model resnet50 --checkpoint checkpoints/resnet18/checkpoint.pth --device cpu --data " + kSample);
  EXPECT_EQ(explicit_path.exit_code, 0) << explicit_path.output;
  EXPECT_TRUE(contains(explicit_path.output, "warning: --model resnet50 was given")) << explicit_path.output;
  const auto agreeing = run_resnet_in(tmp.path(), "predict --model resnet18 --device cpu --image " + kImage);
  EXPECT_EQ(agreeing.exit_code, 0) << agreeing.output;
  EXPECT_FALSE(contains(agreeing.output, "warning")) << agreeing.output;
}

TEST(CliFirstContact, TrainResumeTakesTheFileTrainWrote) {
  resnet::test::TempDir tmp;
  const std::string common = " --data " + kSample + " --image-size 32 -b 100 --device cpu --epochs 1";
  const fs::path resume = tmp.path() / "ck" / "resnet18" / "resume.pt";
  const auto first = run_resnet("train --model resnet18 --max-steps 2 --checkpoint-dir " + (tmp.path() / "ck").string() + common);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_TRUE(fs::exists(resume)) << first.output;
  // --resume alone picks the model (resnet18, not the default resnet50) and the folder.
  const auto resumed = run_resnet_in(tmp.path(), "train --resume ck/resnet18/resume.pt --max-steps 3" + common);
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "Resuming from epoch 1, step 2")) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "Training resnet18")) << resumed.output;

  const std::pair<std::string, std::string> refused[] = {
      {"--resume " + resume.string() + " --restart", "error: --resume and --restart contradict each other"},
      {"--resume " + resume.string() + " --model resnet50", "error: --model resnet50 contradicts --resume"},
      {"--resume " + resume.string() + " --checkpoint-dir elsewhere", "error: --checkpoint-dir elsewhere contradicts"},
  };
  for (const auto& [flags, message] : refused) {
    const auto r = run_resnet("train " + flags + common);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.output;
    EXPECT_TRUE(contains(r.output, message)) << flags << ": " << r.output;
  }
  const auto missing = run_resnet("train --resume " + (tmp.path() / "no" / "resume.pt").string() + common);
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_TRUE(contains(missing.output, "resume.pt: no such file (--resume)")) << missing.output;
}

TEST(CliFirstContact, ASecondRunOfAFinishedTrainingSaysSoAtOnce) {
  // The fixture's run finished its one epoch; running it again must not open the data (here the
  // data folder is gone, so opening it would fail) and must say the run is complete.
  const fs::path ck = trained_checkpoints() / "checkpoints";
  const auto r = run_resnet("train --model resnet18 --data " + (trained_checkpoints() / "no-such-data").string() +
                            " --image-size 32 --epochs 1 -b 100 --device cpu --checkpoint-dir " + ck.string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "Training is complete (1 epochs, best accuracy ")) << r.output;
  EXPECT_FALSE(contains(r.output, "Resuming")) << r.output;
  EXPECT_FALSE(contains(r.output, "Training resnet18")) << r.output;
}

TEST(CliFirstContact, TargetAccuracyStopsTrainingAndASecondRunSaysSo) {
  // 1% top-1 on the sample is reached after the first epoch: the run stops there (of 3), says
  // when, and a second run says the target is reached without training.
  resnet::test::TempDir tmp;
  const std::string flags = "train --model resnet18 --data " + kSample +
                            " --image-size 32 --epochs 3 -b 100 --device cpu --target-accuracy 1 --checkpoint-dir " +
                            tmp.path().string();
  const auto r = run_resnet(flags);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "Reached --target-accuracy 1% (test top-1 ")) << r.output;
  EXPECT_TRUE(contains(r.output, "after epoch 1, ")) << r.output;
  EXPECT_FALSE(contains(r.output, "Epoch 2")) << r.output;
  const auto again = run_resnet(flags);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(contains(again.output, "Training reached --target-accuracy 1% (best accuracy ")) << again.output;
  EXPECT_FALSE(contains(again.output, "Epoch 2")) << again.output;
  EXPECT_EQ(run_resnet("train --model resnet18 --data /nonexistent --device cpu --target-accuracy 101").exit_code, 2);
}

TEST(CliCuda, TrainWarmsUpBesideTheDataThenGraphsTheStep) {
  // On CUDA, train runs one throwaway step (cuDNN autotuning, kernel loading) while the data is
  // read, says how long each took, and then trains as before: graphed, both epochs finished.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  resnet::test::TempDir tmp;
  const auto r = run_resnet("train --model resnet18 --data " + kSample +
                            " --epochs 2 --batch-size 8 --image-size 64 --log-every 1000 --checkpoint-dir " +
                            tmp.path().string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "Start-up: data read in ")) << r.output;
  EXPECT_TRUE(contains(r.output, "cuDNN autotuning and GPU warm-up ")) << r.output;
  EXPECT_TRUE(contains(r.output, "Training step: CUDA graph (batch 8)")) << r.output;
  EXPECT_TRUE(fs::exists(tmp.path() / "resnet18" / "metrics.csv"));
}

TEST(CliCuda, MixingTurnedOffCapturesTheStepAgain) {
  // --mixup-off-epoch 1 on CUDA: the second epoch drops the graph captured with Mixup and captures
  // the step again while the loader writes into its input buffer; both epochs train to a finite
  // loss, and the graph is what the step runs at the end.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  resnet::test::TempDir tmp;
  const auto r = run_resnet("train --model resnet18 --data " + kSample +
                            " --epochs 2 --batch-size 8 --image-size 64 --log-every 1000 --mixup 0.2 --cutmix 1 "
                            "--mixup-off-epoch 1 --checkpoint-dir " +
                            tmp.path().string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "Mixup and CutMix off (--mixup-off-epoch 1: from epoch 2 on)")) << r.output;
  EXPECT_TRUE(contains(r.output, "Training step: CUDA graph (batch 8)")) << r.output;
  std::ifstream metrics(tmp.path() / "resnet18" / "metrics.csv");
  std::string line;
  std::getline(metrics, line);  // (the header)
  int epochs = 0;
  while (std::getline(metrics, line)) {
    const double train_loss = std::stod(line.substr(line.find(',') + 1));
    EXPECT_TRUE(std::isfinite(train_loss) && train_loss > 0) << line;
    ++epochs;
  }
  EXPECT_EQ(epochs, 2);
}

TEST(ConsoleReporter, AnEpochLineSaysWhatTheStepsWaitedFor) {
  // The epoch line's waits (bench/imagenet_bench.sh reads them): the host's wait for data, of it
  // the first batch's (from 0.05 s), the GPU's time between steps and of that the transforms';
  // nothing where the wait is under 2% of the epoch.
  resnet::EpochReport e;
  e.epoch = 2;
  e.tested = false;
  e.seconds = 3.0;
  e.img_per_s = 7000;
  e.data_wait = 1.5;
  e.data_wait_first = 0.2;
  e.gpu_between_steps = 0.4;
  e.gpu_transforming = 0.02;
  resnet::cli::ConsoleReporter reporter;
  auto line = [&] {
    testing::internal::CaptureStdout();
    reporter.epoch_end(e);
    return testing::internal::GetCapturedStdout();
  };
  EXPECT_TRUE(contains(line(), "(1.5 s of it waiting for data, 0.20 s for the first batch; the GPU 0.4 s between "
                               "steps, 0.02 s of that transforming)"));
  e.data_wait_first = 0.01;
  e.gpu_transforming = 0;
  EXPECT_TRUE(contains(line(), "(1.5 s of it waiting for data; the GPU 0.4 s between steps)"));
  e.gpu_between_steps = 0;  // (the CPU)
  EXPECT_TRUE(contains(line(), "(1.5 s of it waiting for data)"));
  e.data_wait = 0.05;
  const std::string quiet = line();
  EXPECT_FALSE(contains(quiet, "waiting")) << quiet;
  EXPECT_TRUE(contains(quiet, "7000.0 img/s, 3.0 s\n")) << quiet;
}
