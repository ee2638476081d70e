// metrics.csv: one row per epoch (epoch, train loss, test loss, top-1, top-5, img/s, seconds,
// learning rate, wall seconds since the run started), rewritten atomically with each new row. An
// epoch that --eval-every did not test has its three test columns empty.
#pragma once

#include <string>

#include "train/report.h"

namespace resnet {

// Writes `csv` with the rows of epochs before `epoch.epoch` kept and this epoch's row last: rows
// of this epoch or later (left by a run that crashed after writing them) are replaced, so a
// resumed run never duplicates one.
void write_metrics_row(const std::string& csv, const EpochReport& epoch, double learning_rate);

}  // namespace resnet
