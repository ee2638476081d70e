#include "plot/curves.h"

#include <cmath>
#include <map>
#include <sstream>

#include "core/error.h"
#include "io/file.h"

namespace resnet {
namespace {

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream s(line);
  std::string field;
  while (std::getline(s, field, ',')) out.push_back(field);
  if (!line.empty() && line.back() == ',') out.emplace_back();  // getline drops a last empty field
  return out;
}

bool is_test_column(const std::string& name) { return name == "test_loss" || name == "top1" || name == "top5"; }

// The points of (x, y) whose y is a number: an epoch --eval-every did not test has none.
Series series(const std::string& name, const std::vector<double>& x, const std::vector<double>& y) {
  Series s{name, {}, {}};
  for (size_t i = 0; i < x.size() && i < y.size(); ++i)
    if (!std::isnan(y[i])) s.x.push_back(x[i]), s.y.push_back(y[i]);
  return s;
}

}  // namespace

std::vector<Panel> run_curves(const std::string& path) {
  const auto bytes = read_file_bytes(path);
  std::stringstream in(std::string(bytes.begin(), bytes.end()));
  std::string line;
  if (!std::getline(in, line)) throw InputError(path + ": empty (no header; is it train's metrics.csv?)");
  const auto header = split(line);
  std::map<std::string, std::vector<double>> columns;
  for (const auto& name : header) columns[name];
  for (const char* needed : {"epoch", "train_loss", "test_loss", "top1", "top5"})
    if (!columns.count(needed)) throw InputError(path + ": no column " + needed + " (is it train's metrics.csv?)");
  int row = 1;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty()) continue;
    const auto fields = split(line);
    if (fields.size() != header.size())
      throw InputError(path + ": line " + std::to_string(row) + " has " + std::to_string(fields.size()) +
                       " values, the header " + std::to_string(header.size()));
    for (size_t i = 0; i < fields.size(); ++i) {
      if (fields[i].empty() && is_test_column(header[i])) {  // not tested that epoch
        columns[header[i]].push_back(std::nan(""));
        continue;
      }
      size_t used = 0;
      double v = 0;
      try {
        v = std::stod(fields[i], &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != fields[i].size())
        throw InputError(path + ": line " + std::to_string(row) + ": " + header[i] + " = '" + fields[i] +
                         "' is not a number");
      columns[header[i]].push_back(v);
    }
  }
  if (columns["epoch"].empty()) throw InputError(path + ": no epochs yet (only the header)");
  auto percent = [](std::vector<double> v) {
    for (double& x : v) x *= 100;
    return v;
  };
  const auto& epoch = columns["epoch"];
  std::vector<Panel> panels{
      {"Loss",
       "epoch",
       "loss",
       {series("train", epoch, columns["train_loss"]), series("test", epoch, columns["test_loss"])}},
      {"Test accuracy",
       "epoch",
       "%",
       {series("top-1", epoch, percent(columns["top1"])), series("top-5", epoch, percent(columns["top5"]))}}};
  if (columns.count("elapsed_s")) {
    std::vector<double> minutes = columns["elapsed_s"];
    for (double& m : minutes) m /= 60;
    panels.push_back({"Loss against wall time",
                      "minutes since the start",
                      "loss",
                      {series("train", minutes, columns["train_loss"]), series("test", minutes, columns["test_loss"])}});
    panels.push_back(
        {"Test top-1 against wall time", "minutes since the start", "%", {series("top-1", minutes, percent(columns["top1"]))}});
  }
  return panels;
}

}  // namespace resnet
