// Starts the API: the port comes from --port N, else $PORT, else 3000.
const { createApp } = require("./app");

const flag = process.argv.indexOf("--port");
const port = Number(flag >= 0 ? process.argv[flag + 1] : process.env.PORT || 3000);

createApp().listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${port}`);
});
