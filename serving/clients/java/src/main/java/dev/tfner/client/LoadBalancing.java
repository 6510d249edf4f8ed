package dev.tfner.client;

/** How a client spreads its calls over the addresses its target resolves to. */
public enum LoadBalancing {
  /**
   * gRPC's default: one connection to the first address that answers. Behind a Kubernetes
   * ClusterIP Service every call then goes to one pod for the life of the connection.
   */
  PICK_FIRST("pick_first"),
  /**
   * A connection to every address the DNS name resolves to, calls in turn over them. Point it at a
   * headless Service (one A record per pod) to spread load; the target becomes {@code
   * dns:///host:port} unless it names a resolver already.
   */
  ROUND_ROBIN("round_robin");

  private final String policy;

  LoadBalancing(String policy) {
    this.policy = policy;
  }

  /** The gRPC load-balancing policy name. */
  public String policy() {
    return policy;
  }
}
