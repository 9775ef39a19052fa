import { Chart, registerables } from "chart.js";
import { useEffect, useRef } from "react";

Chart.register(...registerables);

export function RevenueChart({ months }: { months: [string, number][] }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (!canvas.current) return;
    const chart = new Chart(canvas.current, {
      type: "line",
      data: {
        labels: months.map(([month]) => month),
        datasets: [{ label: "Revenue", data: months.map(([, value]) => value), tension: 0.3 }],
      },
      options: { responsive: true, animation: false },
    });
    return () => chart.destroy();
  }, [months]);
  return <canvas ref={canvas} aria-label="Revenue by month" role="img" />;
}
