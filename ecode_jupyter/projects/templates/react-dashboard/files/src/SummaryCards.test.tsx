import { renderToStaticMarkup } from "react-dom/server";
import { expect, it } from "vitest";
import { SummaryCards } from "./SummaryCards";

it("shows the total, the average and the best month", () => {
  const html = renderToStaticMarkup(
    <SummaryCards summary={{ total: 12345, average: 2058, bestMonth: "2026-06" }} />,
  );
  expect(html).toContain("12,345");
  expect(html).toContain("2,058");
  expect(html).toContain("2026-06");
});
