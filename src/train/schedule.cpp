#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"

namespace resnet {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::string str(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// torch.optim.lr_scheduler.OneCycleLR's _annealing_cos: from start to end as pct goes 0 -> 1.
double annealing_cos(double start, double end, double pct) {
  return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0);
}

}  // namespace

void check_schedule(const ScheduleOptions& o) {
  const std::vector<std::string> kinds{"constant", "step", "multistep", "cosine", "onecycle"};
  if (std::find(kinds.begin(), kinds.end(), o.kind) == kinds.end())
    throw UsageError("--lr-schedule must be constant, step, multistep, cosine or onecycle (got " + o.kind + ")");
  require_not_negative(o.warmup_epochs, "--warmup-epochs");
  if (!(o.warmup_start_factor >= 0 && o.warmup_start_factor <= 1))
    throw UsageError("--warmup-start-factor must be between 0 and 1 (got " + str(o.warmup_start_factor) + ")");
  require_at_least(o.step_size, 1, "--lr-step-size");
  require_not_negative(o.gamma, "--lr-gamma");
  require_not_negative(o.min_lr, "--min-lr");
  for (size_t i = 0; i < o.milestones.size(); ++i) {
    require_at_least(o.milestones[i], 1, "--lr-milestones");
    if (i > 0 && o.milestones[i] <= o.milestones[i - 1])
      throw UsageError("--lr-milestones must increase (got " + std::to_string(o.milestones[i - 1]) + " then " +
                       std::to_string(o.milestones[i]) + ")");
  }
  if (o.kind == "multistep" && o.milestones.empty())
    throw UsageError("--lr-schedule multistep needs --lr-milestones (epochs, e.g. 30,60,80)");
  if (o.kind == "onecycle") {
    if (o.warmup_epochs > 0)
      throw UsageError("--lr-schedule onecycle rises from a low rate itself; leave --warmup-epochs out");
    if (!(o.pct_start > 0 && o.pct_start < 1))
      throw UsageError("--onecycle-pct-start must be between 0 and 1 (got " + str(o.pct_start) + ")");
    if (!(o.div_factor >= 1)) throw UsageError("--onecycle-div-factor must be at least 1 (got " + str(o.div_factor) + ")");
    if (!(o.final_div_factor >= 1))
      throw UsageError("--onecycle-final-div-factor must be at least 1 (got " + str(o.final_div_factor) + ")");
  }
}

nlohmann::json to_json(const ScheduleOptions& o, int64_t epochs) {
  nlohmann::json j{{"kind", o.kind}};
  if (o.warmup_epochs > 0) {
    j["warmup_epochs"] = o.warmup_epochs;
    j["warmup_start_factor"] = o.warmup_start_factor;
  }
  if (o.kind == "step") j["step_size"] = o.step_size;
  if (o.kind == "multistep") j["milestones"] = o.milestones;
  if (o.kind == "step" || o.kind == "multistep") j["gamma"] = o.gamma;
  if (o.kind == "cosine") j["min_lr"] = o.min_lr;
  if (o.kind == "onecycle") {
    j["pct_start"] = o.pct_start;
    j["div_factor"] = o.div_factor;
    j["final_div_factor"] = o.final_div_factor;
  }
  if (o.kind == "cosine" || o.kind == "onecycle") j["epochs"] = epochs;
  return j;
}

LrSchedule::LrSchedule(ScheduleOptions options, double base_lr, int64_t steps_per_epoch, int64_t epochs)
    : o_(std::move(options)),
      base_(base_lr),
      steps_per_epoch_(std::max<int64_t>(1, steps_per_epoch)),
      total_(std::max<int64_t>(1, steps_per_epoch_ * epochs)),
      warmup_(std::min<int64_t>(total_, static_cast<int64_t>(std::llround(o_.warmup_epochs * steps_per_epoch_)))) {}

bool LrSchedule::varies() const { return o_.kind != "constant" || warmup_ > 0; }

double LrSchedule::at(int64_t i) const {
  i = std::max<int64_t>(0, i);
  if (o_.kind == "onecycle") {
    // OneCycleLR with total_steps = N: phase ends at pct_start * N - 1 and N - 1
    const double initial = base_ / o_.div_factor, final_lr = initial / o_.final_div_factor;
    const double rise_end = o_.pct_start * static_cast<double>(total_) - 1.0;
    const double fall_end = static_cast<double>(total_) - 1.0;
    const double t = static_cast<double>(std::min<int64_t>(i, total_ - 1));
    if (t <= rise_end) return annealing_cos(initial, base_, rise_end > 0 ? t / rise_end : 1.0);
    return annealing_cos(base_, final_lr, fall_end > rise_end ? (t - rise_end) / (fall_end - rise_end) : 1.0);
  }
  if (i < warmup_) {
    const double s = o_.warmup_start_factor;
    return base_ * (s + (1.0 - s) * static_cast<double>(i) / static_cast<double>(warmup_));
  }
  if (o_.kind == "step") return base_ * std::pow(o_.gamma, static_cast<double>(i / (o_.step_size * steps_per_epoch_)));
  if (o_.kind == "multistep") {
    int passed = 0;
    for (const int64_t m : o_.milestones)
      if (m * steps_per_epoch_ <= i) ++passed;
    return base_ * std::pow(o_.gamma, passed);
  }
  if (o_.kind == "cosine") {
    const double span = static_cast<double>(std::max<int64_t>(1, total_ - warmup_));
    const double t = std::min(1.0, static_cast<double>(i - warmup_) / span);
    return o_.min_lr + (base_ - o_.min_lr) * (1.0 + std::cos(kPi * t)) / 2.0;
  }
  return base_;  // constant
}

double scaled_learning_rate(double lr, int64_t global_batch, int64_t reference_batch) {
  if (reference_batch <= 0) return lr;
  return lr * static_cast<double>(global_batch) / static_cast<double>(reference_batch);
}

int64_t progressive_image_size(int64_t start, double fraction, int64_t full, int64_t epoch, int64_t epochs) {
  const double ramp = fraction * static_cast<double>(epochs);  // epochs before the full size
  if (start <= 0 || start >= full || static_cast<double>(epoch) >= ramp) return full;
  const int64_t steps = (full - start + 31) / 32;
  const auto k = static_cast<int64_t>(std::floor(static_cast<double>(epoch) / ramp * static_cast<double>(steps)));
  return std::min(full, start + 32 * k);
}

}  // namespace resnet
