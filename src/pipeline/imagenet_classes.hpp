// The ImageNet-1k class table (imagenet_classes.cpp), parsed by class_names.cpp.
#pragma once

namespace uvit {

// 1000 lines "wnid synonym, synonym, ..." in class-id order.
const char* imagenet_class_table();

}  // namespace uvit
