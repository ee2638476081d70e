#include "plot/curves.h"

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
  return out;
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
      {"Loss", "epoch", "loss", {{"train", epoch, columns["train_loss"]}, {"test", epoch, columns["test_loss"]}}},
      {"Test accuracy", "epoch", "%", {{"top-1", epoch, percent(columns["top1"])}, {"top-5", epoch, percent(columns["top5"])}}}};
  if (columns.count("elapsed_s")) {
    std::vector<double> minutes = columns["elapsed_s"];
    for (double& m : minutes) m /= 60;
    panels.push_back({"Loss against wall time", "minutes since the start", "loss",
                      {{"train", minutes, columns["train_loss"]}, {"test", minutes, columns["test_loss"]}}});
    panels.push_back({"Test top-1 against wall time", "minutes since the start", "%",
                      {{"top-1", minutes, percent(columns["top1"])}}});
  }
  return panels;
}

}  // namespace resnet
