// A build without cairo: no charts.
#include <stdexcept>

#include "plot/chart.h"

namespace resnet {

namespace {
[[noreturn]] void missing() { throw std::runtime_error(kNoCharts); }
}  // namespace

bool plotting_supported() { return false; }
void write_line_charts(const std::string&, const std::vector<Panel>&, int, int, int) { missing(); }
void write_confusion_png(const std::string&, const std::vector<int64_t>&, const std::vector<std::string>&,
                         const std::string&) {
  missing();
}

}  // namespace resnet
