"""End-to-end tests: a real ``srs serve`` process driven by third-party peers on loopback."""
