//! Internal model shared by all formats (translate helper fills this in).
