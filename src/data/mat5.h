// Reading MATLAB's MAT-file version 5 (what `save` writes by default, and scipy.io.savemat):
// enough of it for ImageNet's devkit (data/meta.mat): numeric, character, cell and struct
// arrays, zlib-compressed or not, little-endian. Sparse arrays, objects, complex numbers and
// big-endian files are refused. Every problem is an InputError naming the file and the byte.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace resnet {

struct MatArray {
  enum class Kind { kNumeric, kChar, kCell, kStruct };
  Kind kind = Kind::kNumeric;
  std::vector<int64_t> dims;
  std::vector<double> numbers;          // kNumeric: the values, column-major
  std::string text;                     // kChar: the characters (non-ASCII ones as '?'), column-major
  std::vector<std::string> fields;      // kStruct: the field names
  std::vector<MatArray> elements;       // kCell: the cells; kStruct: element e's field f at e * fields + f

  int64_t count() const;  // the product of dims
  // kStruct: element e's field `name`; InputError naming `where` when there is no such field.
  const MatArray& field(int64_t e, const std::string& name, const std::string& where) const;
};

// The named variables of the MAT file `bytes` (read from `path`, named in errors).
std::map<std::string, MatArray> read_mat5(const std::vector<uint8_t>& bytes, const std::string& path);

}  // namespace resnet
