//! Placeholder: the vendor simulator is being written.
