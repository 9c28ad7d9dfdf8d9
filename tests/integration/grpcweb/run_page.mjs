// Drives Debian's chromium, headless, through playwright-core: loads the page, waits for its
// results and prints them as JSON.
//   node run_page.mjs <page url> <host-resolver rules> <spki sha256> [more chromium flags]
import { chromium } from "playwright-core";

const [url, rules, spki, ...flags] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [`--host-resolver-rules=${rules}`, `--ignore-certificate-errors-spki-list=${spki}`, "--no-sandbox", ...flags],
});
try {
  const page = await browser.newPage();
  const log = [];
  page.on("console", (m) => log.push(m.text()));
  await page.goto(url);
  await page.waitForFunction(() => window.done === true, null, { timeout: 30000 });
  const results = await page.evaluate(() => window.results);
  console.log(JSON.stringify({ results, console: log }));
} finally {
  await browser.close();
}
