// Sample data and the numbers the dashboard shows; pure functions, tested in data.test.ts.

export interface Sale {
  month: string; // "2026-01"
  category: string;
  revenue: number;
}

export const CATEGORIES = ["Books", "Games", "Music"] as const;

export const SALES: Sale[] = [
  ["2026-01", 120, 80, 40],
  ["2026-02", 135, 95, 42],
  ["2026-03", 150, 70, 55],
  ["2026-04", 160, 110, 50],
  ["2026-05", 155, 130, 61],
  ["2026-06", 170, 125, 66],
].flatMap(([month, ...values]) =>
  CATEGORIES.map((category, i) => ({
    month: String(month),
    category,
    revenue: Number(values[i]),
  })),
);

export interface Summary {
  total: number;
  average: number;
  bestMonth: string | null;
}

/** Revenue per month, in month order, for one category or all ("All"). */
export function revenueByMonth(sales: Sale[], category = "All"): [string, number][] {
  const totals = new Map<string, number>();
  for (const sale of sales) {
    if (category !== "All" && sale.category !== category) continue;
    totals.set(sale.month, (totals.get(sale.month) ?? 0) + sale.revenue);
  }
  return [...totals.entries()].sort(([a], [b]) => a.localeCompare(b));
}

export function summarize(months: [string, number][]): Summary {
  if (months.length === 0) return { total: 0, average: 0, bestMonth: null };
  const total = months.reduce((sum, [, value]) => sum + value, 0);
  const best = months.reduce((top, row) => (row[1] > top[1] ? row : top));
  return { total, average: Math.round(total / months.length), bestMonth: best[0] };
}
