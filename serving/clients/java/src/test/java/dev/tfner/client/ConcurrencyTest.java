package dev.tfner.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/** One client shared by 16 threads gives each the right answers. */
class ConcurrencyTest {
  private static final int CALLERS = 16;

  @Test
  void sixteenCallersShareOneClient() throws Exception {
    List<ParityCase> cases = TestEnv.parity();
    ExecutorService pool = Executors.newFixedThreadPool(CALLERS);
    try (NerClient client = TestEnv.client().chunkSize(4).build()) {
      List<Future<List<String>>> results = new ArrayList<>();
      for (int caller = 0; caller < CALLERS; caller++) {
        int first = caller;
        Callable<List<String>> work = () -> {
          // Each caller sends its own texts, several calls of a few texts each.
          List<String> problems = new ArrayList<>();
          for (int call = 0; call < 4; call++) {
            List<ParityCase> mine = new ArrayList<>();
            for (int k = 0; k < 6; k++) {
              mine.add(cases.get((first + CALLERS * (call * 6 + k)) % cases.size()));
            }
            List<Prediction> got = client.predict(mine.stream().map(ParityCase::text).toList());
            for (int k = 0; k < mine.size(); k++) {
              problems.addAll(mine.get(k).mismatches(got.get(k)));
            }
          }
          return problems;
        };
        results.add(pool.submit(work));
      }
      List<String> problems = new ArrayList<>();
      for (Future<List<String>> result : results) {
        problems.addAll(result.get());
      }
      assertEquals(List.of(), problems);
    } finally {
      pool.shutdownNow();
    }
  }
}
