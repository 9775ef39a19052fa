import type { Summary } from "./data";

export function SummaryCards({ summary }: { summary: Summary }) {
  return (
    <div className="cards">
      <div className="card" data-testid="total">
        <span>Total revenue</span>
        <strong>{summary.total.toLocaleString("en-US")}</strong>
      </div>
      <div className="card" data-testid="average">
        <span>Monthly average</span>
        <strong>{summary.average.toLocaleString("en-US")}</strong>
      </div>
      <div className="card" data-testid="best">
        <span>Best month</span>
        <strong>{summary.bestMonth ?? "—"}</strong>
      </div>
    </div>
  );
}
