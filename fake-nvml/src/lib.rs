//! placeholder replaced by the fake NVML library
