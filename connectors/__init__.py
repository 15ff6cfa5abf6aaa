"""One subpackage per external system: client code, webhook parsing and verification, simulator."""
