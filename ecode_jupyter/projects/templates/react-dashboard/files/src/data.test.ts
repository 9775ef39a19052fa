import { describe, expect, it } from "vitest";
import { SALES, revenueByMonth, summarize } from "./data";

describe("revenueByMonth", () => {
  it("adds every category up per month, in month order", () => {
    const months = revenueByMonth(SALES);
    expect(months).toHaveLength(6);
    expect(months[0]).toEqual(["2026-01", 240]);
  });

  it("keeps only the chosen category", () => {
    expect(revenueByMonth(SALES, "Music")[0]).toEqual(["2026-01", 40]);
  });
});

describe("summarize", () => {
  it("gives the total, the rounded average and the best month", () => {
    expect(summarize([["2026-01", 10], ["2026-02", 30], ["2026-03", 21]])).toEqual({
      total: 61,
      average: 20,
      bestMonth: "2026-02",
    });
  });

  it("has nothing to say about no data", () => {
    expect(summarize([])).toEqual({ total: 0, average: 0, bestMonth: null });
  });
});
