"""End-to-end tests: real programs (a browser, the cluster) driven from outside."""
