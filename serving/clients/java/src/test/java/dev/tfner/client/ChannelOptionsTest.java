package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The channel options: TLS (against the plaintext test server: UNAVAILABLE) and load balancing. */
class ChannelOptionsTest {

  @Test
  void tlsClientAgainstPlaintextServerIsUnavailable() {
    try (NerClient client = TestEnv.client().retries(0).tls().build()) {
      UnavailableException e = assertThrows(UnavailableException.class, () -> client.predict(List.of("北京")));
      assertEquals(1, e.attempts());
    }
  }

  @Test
  void missingCaFileIsReportedByName() {
    UncheckedIOException e =
        assertThrows(UncheckedIOException.class, () -> NerClient.builder("localhost:8500").tls(Path.of("/no/such/ca.pem")));
    assertEquals("cannot read CA certificates from /no/such/ca.pem", e.getMessage());
  }

  @Test
  void roundRobinClientWorksAgainstOneAddress() {
    try (NerClient client = TestEnv.client().loadBalancing(LoadBalancing.ROUND_ROBIN).build()) {
      assertEquals(1, client.predict(List.of("北京欢迎你")).size());
    }
  }
}
