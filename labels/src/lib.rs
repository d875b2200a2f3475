//! Sensitive-data labelling (work in progress; see issue 6).
