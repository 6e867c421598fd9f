import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` serves the front end with hot reload and sends the API to the FastAPI back end
// (`make react-chat`, port 8000); `npm run build` writes dist/, which the back end serves itself.
const backend = "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: { proxy: { "/wattfare": backend, "/api": backend } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    rollupOptions: {
      // zod's comments confuse Rollup's annotation check; they are third-party and harmless.
      onwarn(warning, warn) {
        if (warning.code === "INVALID_ANNOTATION" && warning.id?.includes("node_modules")) return;
        warn(warning);
      },
    },
  },
});
