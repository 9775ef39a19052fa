import { useMemo, useState } from "react";
import { CATEGORIES, SALES, revenueByMonth, summarize } from "./data";
import { RevenueChart } from "./RevenueChart";
import { SummaryCards } from "./SummaryCards";

export function App() {
  const [category, setCategory] = useState("All");
  const months = useMemo(() => revenueByMonth(SALES, category), [category]);
  return (
    <main>
      <h1>{"{{project_name}}"}</h1>
      <label>
        Category{" "}
        <select
          name="category"
          value={category}
          onChange={(event) => setCategory(event.target.value)}
        >
          {["All", ...CATEGORIES].map((name) => (
            <option key={name}>{name}</option>
          ))}
        </select>
      </label>
      <SummaryCards summary={summarize(months)} />
      <RevenueChart months={months} />
    </main>
  );
}
