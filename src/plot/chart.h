// PNG charts drawn with cairo (Debian's libcairo2-dev): line charts for `resnet plot` (a run's
// curves from metrics.csv) and a heatmap for `resnet test --confusion`. Cairo rather than a
// plotting library: it is what a desktop already has, small (libplplot-dev pulls Qt, wxWidgets and
// gfortran), and two kinds of chart need nothing but lines, text and filled boxes. A build
// without cairo has no charts: plotting_supported() is false and the writers throw saying so.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace resnet {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

struct Panel {
  std::string title, x_label, y_label;
  std::vector<Series> series;
};

bool plotting_supported();
// What a build without cairo says.
inline constexpr const char* kNoCharts =
    "this build draws no charts (it found no cairo; scripts/install-deps installs libcairo2-dev, then rebuild)";

// The panels on a grid `columns` wide, each panel_width x panel_height pixels; the file written
// atomically. InputError naming `path` when it cannot be written.
void write_line_charts(const std::string& path, const std::vector<Panel>& panels, int columns,
                       int panel_width = 600, int panel_height = 400);

// counts[t * n + p] for n = labels.size(): each cell shaded by its share of its row (a class's
// recall on the diagonal), its count written in it; rows are the true class, columns the answer.
void write_confusion_png(const std::string& path, const std::vector<int64_t>& counts,
                         const std::vector<std::string>& labels, const std::string& title);

}  // namespace resnet
