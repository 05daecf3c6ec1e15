//! Interop with the Python `ocpp` package: placeholder filled below.
