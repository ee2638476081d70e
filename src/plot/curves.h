// A run's curves from its metrics.csv (train/metrics.h), as chart panels (plot/chart.h): loss and
// accuracy against the epoch, and against wall time where the file has elapsed_s.
#pragma once

#include <string>
#include <vector>

#include "plot/chart.h"

namespace resnet {

// InputError naming the file when it is missing, has no rows, or lacks a column the curves need
// (epoch, train_loss, test_loss, top1, top5) or has a value that is not a number.
std::vector<Panel> run_curves(const std::string& metrics_csv);

}  // namespace resnet
