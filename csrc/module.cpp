// The compiled module swirl._native: numpy arrays and str in and out, no libtorch.
#include "bindings.hpp"

PYBIND11_MODULE(_native, m) {
  m.doc() = "swirl native core: tag parsing and prefix-shared packing";
  swirl::register_tags(m);
  swirl::register_packer(m);
}
