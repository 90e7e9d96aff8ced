//! The KV conformance suite on every backend.

mod embedded {
    ifc_testkit::conformance_tests!(ifc_testkit::Backend::Embedded);
}

mod etcd {
    ifc_testkit::conformance_tests!(ifc_testkit::Backend::Etcd);
}

mod etcd_cluster {
    ifc_testkit::conformance_tests!(ifc_testkit::ThreeMemberEtcd);
}
