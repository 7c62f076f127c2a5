def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "controlplane: needs the real Kubernetes control plane built by e2e/controlplane/build.sh",
    )
