//! net (to be written).
