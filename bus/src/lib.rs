//! Kafka transport (work in progress; see issue 3).
