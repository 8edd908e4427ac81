"""Generated protobuf and gRPC bindings of proto/oracle.proto (run scripts/gen_proto.sh; never edit)."""
