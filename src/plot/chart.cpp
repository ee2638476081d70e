#include "plot/chart.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>

#include "core/error.h"
#include "io/file.h"

namespace resnet {
namespace {

using Surface = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using Context = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

struct Rgb {
  double r, g, b;
};
constexpr Rgb kPalette[] = {{0.12, 0.47, 0.71}, {1.0, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                            {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}};

void color(cairo_t* cr, const Rgb& c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }

// Text anchored at (x, y): ax, ay in [0, 1] pick the point of its box (0.5, 0.5: centred).
void text(cairo_t* cr, const std::string& s, double x, double y, double ax, double ay, double size = 12,
          bool bold = false) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
  cairo_show_text(cr, s.c_str());
}

std::string number(double v, double step) {
  char buf[32];
  const int decimals = step >= 1 ? 0 : std::min(6, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// About `wanted` round steps (1, 2 or 5 times a power of ten) over [lo, hi].
double tick_step(double lo, double hi, int wanted = 5) {
  const double raw = (hi - lo) / wanted;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

void write_png(cairo_surface_t* surface, const std::string& path) {
  std::string bytes;
  const cairo_status_t status = cairo_surface_write_to_png_stream(
      surface,
      [](void* out, const unsigned char* data, unsigned int n) {
        static_cast<std::string*>(out)->append(reinterpret_cast<const char*>(data), n);
        return CAIRO_STATUS_SUCCESS;
      },
      &bytes);
  if (status != CAIRO_STATUS_SUCCESS) throw InputError(path + ": cannot encode the PNG: " + cairo_status_to_string(status));
  write_file_atomically(path, bytes);
}

void draw_panel(cairo_t* cr, const Panel& p, double x0, double y0, double w, double h) {
  const double left = x0 + 70, right = x0 + w - 20, top = y0 + 36, bottom = y0 + h - 50;
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const Series& s : p.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
    }
  color(cr, {0, 0, 0});
  text(cr, p.title, x0 + w / 2, y0 + 10, 0.5, 0, 14, true);
  if (!std::isfinite(xmin)) {
    text(cr, "(no values)", x0 + w / 2, y0 + h / 2, 0.5, 0.5);
    return;
  }
  if (xmax == xmin) xmin -= 0.5, xmax += 0.5;
  if (ymax == ymin) ymin -= 0.5, ymax += 0.5;
  const double pad = 0.05 * (ymax - ymin);
  ymin -= pad, ymax += pad;
  auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * (right - left); };
  auto py = [&](double y) { return bottom - (y - ymin) / (ymax - ymin) * (bottom - top); };
  // grid and ticks
  cairo_set_line_width(cr, 1);
  for (int axis = 0; axis < 2; ++axis) {
    const double lo = axis ? ymin : xmin, hi = axis ? ymax : xmax, step = tick_step(lo, hi);
    for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) {
      cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
      if (axis) cairo_move_to(cr, left, py(v)), cairo_line_to(cr, right, py(v));
      else cairo_move_to(cr, px(v), top), cairo_line_to(cr, px(v), bottom);
      cairo_stroke(cr);
      color(cr, {0.2, 0.2, 0.2});
      if (axis) text(cr, number(v, step), left - 6, py(v), 1, 0.5, 11);
      else text(cr, number(v, step), px(v), bottom + 6, 0.5, 0, 11);
    }
  }
  color(cr, {0, 0, 0});
  cairo_rectangle(cr, left, top, right - left, bottom - top);
  cairo_stroke(cr);
  text(cr, p.x_label, (left + right) / 2, y0 + h - 8, 0.5, 1, 12);
  cairo_save(cr);
  cairo_translate(cr, x0 + 14, (top + bottom) / 2);
  cairo_rotate(cr, -M_PI / 2);
  text(cr, p.y_label, 0, 0, 0.5, 0.5, 12);
  cairo_restore(cr);
  // the series, then their legend (top right)
  cairo_save(cr);
  cairo_rectangle(cr, left, top, right - left, bottom - top);
  cairo_clip(cr);
  cairo_set_line_width(cr, 2);
  for (size_t k = 0; k < p.series.size(); ++k) {
    const Series& s = p.series[k];
    color(cr, kPalette[k % std::size(kPalette)]);
    bool drawing = false;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        drawing = false;
        continue;
      }
      if (drawing) cairo_line_to(cr, px(s.x[i]), py(s.y[i]));
      else cairo_move_to(cr, px(s.x[i]), py(s.y[i]));
      drawing = true;
    }
    cairo_stroke(cr);
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)  // a dot a point: a single point shows too
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        cairo_arc(cr, px(s.x[i]), py(s.y[i]), 2.5, 0, 2 * M_PI);
        cairo_fill(cr);
      }
  }
  cairo_restore(cr);
  if (p.series.empty()) return;
  // The legend in the corner that hides the fewest points (top right first; accuracy curves end
  // there), on a white box so that no curve runs through it.
  const double box_w = 130, box_h = 18 * static_cast<double>(p.series.size()) + 2;
  const std::pair<double, double> corners[] = {{right - box_w - 6, top + 4},
                                               {right - box_w - 6, bottom - box_h - 4},
                                               {left + 6, top + 4},
                                               {left + 6, bottom - box_h - 4}};
  double bx = corners[0].first, by = corners[0].second;
  size_t fewest = SIZE_MAX;
  for (const auto& [cx, cy] : corners) {
    size_t hidden = 0;
    for (const Series& s : p.series)
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        const double x = px(s.x[i]), y = py(s.y[i]);
        hidden += x >= cx - 4 && x <= cx + box_w + 4 && y >= cy - 4 && y <= cy + box_h + 4;
      }
    if (hidden < fewest) fewest = hidden, bx = cx, by = cy;
  }
  cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
  cairo_rectangle(cr, bx, by, box_w, box_h);
  cairo_fill(cr);
  for (size_t k = 0; k < p.series.size(); ++k) {
    const double ly = by + 10 + 18 * static_cast<double>(k);
    color(cr, kPalette[k % std::size(kPalette)]);
    cairo_set_line_width(cr, 3);
    cairo_move_to(cr, bx + 6, ly), cairo_line_to(cr, bx + 31, ly);
    cairo_stroke(cr);
    color(cr, {0, 0, 0});
    text(cr, p.series[k].name, bx + 38, ly, 0, 0.5, 11);
  }
}

}  // namespace

bool plotting_supported() { return true; }

void write_line_charts(const std::string& path, const std::vector<Panel>& panels, int columns, int panel_width,
                       int panel_height) {
  columns = std::max(1, std::min<int>(columns, static_cast<int>(panels.size())));
  const int rows = static_cast<int>((panels.size() + columns - 1) / columns);
  Surface surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, columns * panel_width, std::max(1, rows) * panel_height),
                  cairo_surface_destroy);
  Context cr(cairo_create(surface.get()), cairo_destroy);
  cairo_set_source_rgb(cr.get(), 1, 1, 1);
  cairo_paint(cr.get());
  for (size_t i = 0; i < panels.size(); ++i)
    draw_panel(cr.get(), panels[i], static_cast<double>(i % columns) * panel_width,
               static_cast<double>(i / columns) * panel_height, panel_width, panel_height);
  cairo_surface_flush(surface.get());
  write_png(surface.get(), path);
}

void write_confusion_png(const std::string& path, const std::vector<int64_t>& counts,
                         const std::vector<std::string>& labels, const std::string& title) {
  const int n = static_cast<int>(labels.size());
  if (n == 0 || counts.size() != static_cast<size_t>(n) * n)
    throw std::invalid_argument("write_confusion_png: counts must be labels^2 values");
  const int cell = std::max(28, std::min(60, 600 / n)), margin_left = 150, margin_top = 150, margin = 30;
  const int width = margin_left + n * cell + margin, height = margin_top + n * cell + margin + 30;
  Surface surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height), cairo_surface_destroy);
  Context context(cairo_create(surface.get()), cairo_destroy);
  cairo_t* cr = context.get();
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  color(cr, {0, 0, 0});
  text(cr, title, width / 2.0, 12, 0.5, 0, 14, true);
  for (int t = 0; t < n; ++t) {
    int64_t row = 0;
    for (int p = 0; p < n; ++p) row += counts[t * n + p];
    for (int p = 0; p < n; ++p) {
      const int64_t c = counts[t * n + p];
      const double share = row > 0 ? static_cast<double>(c) / static_cast<double>(row) : 0.0;
      const double x = margin_left + p * cell, y = margin_top + t * cell;
      cairo_set_source_rgb(cr, 1 - 0.88 * share, 1 - 0.6 * share, 1 - 0.25 * share);  // white to dark blue
      cairo_rectangle(cr, x, y, cell, cell);
      cairo_fill(cr);
      if (n <= 30) {
        color(cr, share > 0.5 ? Rgb{1, 1, 1} : Rgb{0, 0, 0});
        text(cr, std::to_string(c), x + cell / 2.0, y + cell / 2.0, 0.5, 0.5, std::min(12, cell / 3));
      }
    }
    color(cr, {0, 0, 0});
    text(cr, labels[t], margin_left - 6, margin_top + (t + 0.5) * cell, 1, 0.5, 11);
  }
  for (int p = 0; p < n; ++p) {  // the answers' names, written upwards above their columns
    cairo_save(cr);
    cairo_translate(cr, margin_left + (p + 0.5) * cell, margin_top - 6);
    cairo_rotate(cr, -M_PI / 2);
    text(cr, labels[p], 0, 0, 0, 0.5, 11);
    cairo_restore(cr);
  }
  cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, margin_left, margin_top, n * cell, n * cell);
  cairo_stroke(cr);
  text(cr, "rows: true class; columns: the model's answer; shade: share of the row", width / 2.0, height - 10, 0.5, 1,
       11);
  cairo_surface_flush(surface.get());
  write_png(surface.get(), path);
}

}  // namespace resnet
