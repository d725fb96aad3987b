// Each native concern registers its Python bindings here; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace swirl {

void register_tags(pybind11::module_& m);
void register_packer(pybind11::module_& m);

}  // namespace swirl
