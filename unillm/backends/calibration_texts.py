"""The calibration texts GPTQ uses when the caller passes none.

GPTQ chooses each layer's rounding from the activations the layer sees on sample inputs, so it
needs text; nothing may be downloaded, so unillm ships its own. These 32 short passages were
written for unillm (no licence strings attached) and mix what a general model meets: English
prose, dialogue, instructions, Python, shell, JSON, SQL, Markdown, numbers, and French, German,
Spanish, Chinese and Japanese. About 1,600 words in all: enough to exercise every layer, far less
than the 128 x 2,048 tokens GPTQ papers calibrate with. For a model you will deploy, pass texts
from its own domain: `QuantizationConfig(method="gptq", calibration=[...])`.
"""

from __future__ import annotations

DEFAULT_CALIBRATION_TEXTS: tuple[str, ...] = (
    "The harbour was quiet before dawn. A few fishing boats rocked against the pier, their lamps "
    "still burning, and a grey cat walked along the railing as if it owned the whole town. By six "
    "o'clock the bakery had opened its shutters, and the smell of warm bread drifted down to the "
    "water, where the first ferry of the day was taking on passengers and crates of oranges.",

    "To reset your password, open the settings page and choose Security. Enter your current "
    "password, then type the new one twice. A strong password has at least twelve characters and "
    "mixes letters, numbers and symbols. If you no longer know your current password, use the "
    "link on the sign-in page instead; we will send a one-time code to your registered e-mail.",

    "def moving_average(values, window):\n"
    "    \"\"\"Return the mean of each run of `window` consecutive values.\"\"\"\n"
    "    if window <= 0:\n"
    "        raise ValueError(\"window must be positive\")\n"
    "    total = sum(values[:window])\n"
    "    result = [total / window]\n"
    "    for i in range(window, len(values)):\n"
    "        total += values[i] - values[i - window]\n"
    "        result.append(total / window)\n"
    "    return result\n",

    "User: Can you recommend a book for a long train journey?\n"
    "Assistant: Gladly. If you enjoy mysteries, try a classic detective novel: the chapters are "
    "short, so it is easy to stop and start. If you would rather learn something, a popular "
    "history of a single invention, such as the clock or the printing press, makes good company "
    "for a few hours.\nUser: Something lighter, maybe?\nAssistant: Then a collection of short "
    "humorous stories would be perfect.",

    "Photosynthesis converts light energy into chemical energy. In the chloroplasts of plant "
    "cells, chlorophyll absorbs mostly red and blue light. Water molecules are split, releasing "
    "oxygen, while carbon dioxide from the air is fixed into sugars through the Calvin cycle. The "
    "overall reaction can be summarised as six molecules of carbon dioxide and six of water "
    "yielding one molecule of glucose and six of oxygen.",

    "{\n  \"id\": 4821,\n  \"name\": \"Ada Lovelace\",\n  \"roles\": [\"admin\", \"editor\"],\n"
    "  \"active\": true,\n  \"last_login\": \"2024-03-18T09:42:11Z\",\n  \"preferences\": {\n"
    "    \"theme\": \"dark\",\n    \"language\": \"en-GB\",\n    \"notifications\": {\"email\": "
    "false, \"push\": true}\n  }\n}",

    "SELECT c.name, COUNT(o.id) AS orders, SUM(o.total) AS revenue\nFROM customers AS c\n"
    "JOIN orders AS o ON o.customer_id = c.id\nWHERE o.created_at >= DATE '2023-01-01'\n"
    "GROUP BY c.name\nHAVING COUNT(o.id) > 5\nORDER BY revenue DESC\nLIMIT 20;",

    "La ville s'éveillait lentement. Sur la place du marché, les marchands installaient leurs "
    "étals de fromages, de légumes et de fleurs. Une vieille dame marchandait le prix des "
    "tomates pendant qu'un enfant, la main dans celle de son père, regardait avec envie les "
    "pâtisseries. Au loin, les cloches de l'église sonnaient huit heures.",

    "Der Zug nach Hamburg hatte zwanzig Minuten Verspätung. Auf dem Bahnsteig standen Reisende "
    "mit Koffern und Kaffeebechern, einige lasen Zeitung, andere telefonierten. Als der Zug "
    "endlich einfuhr, drängten sich alle zu den Türen, und eine freundliche Stimme bat darum, "
    "zuerst die Fahrgäste aussteigen zu lassen.",

    "El río atraviesa el valle de norte a sur y, en primavera, el agua baja rápida y fría desde "
    "las montañas. Los agricultores aprovechan el deshielo para regar los campos de trigo y los "
    "huertos de almendros. En verano, en cambio, el caudal disminuye tanto que los niños pueden "
    "cruzarlo saltando de piedra en piedra.",

    "春天来了，公园里的樱花都开了。周末的时候，很多人带着家人和朋友去公园散步、拍照、野餐。"
    "孩子们在草地上放风筝，老人们坐在长椅上聊天。傍晚时分，夕阳照在湖面上，景色非常美丽。",

    "今日は朝から雨が降っています。駅まで歩く途中で、傘を持っていない学生が走っていくのを見ました。"
    "会社に着いてから、温かいお茶を飲んで、午前中の会議の資料を確認しました。",

    "# Installation\n\n1. Create a virtual environment: `python -m venv .venv`.\n"
    "2. Activate it and install the package with `pip install -e .`.\n"
    "3. Run the tests with `pytest -q`.\n\n## Configuration\n\nSettings are read from "
    "`config.toml` in the working directory. Environment variables override the file; for "
    "example, `APP_LOG_LEVEL=debug` turns on verbose logging.",

    "#!/usr/bin/env bash\nset -euo pipefail\nfor file in data/*.csv; do\n"
    "  name=$(basename \"$file\" .csv)\n  echo \"processing $name\"\n"
    "  sort -t, -k2,2n \"$file\" | uniq > \"out/$name.sorted.csv\"\ndone\n"
    "tar -czf results.tar.gz out/\necho \"done: $(ls out | wc -l) files\"",

    "The quarterly report shows revenue of 4.2 million euros, up 12 percent on the same period "
    "last year, while operating costs rose by only 5 percent. The strongest growth came from the "
    "subscription business, which now accounts for 38 percent of sales. Management expects the "
    "second half of the year to be slower because of seasonal effects.",

    "To make a simple tomato soup, soften one chopped onion and two cloves of garlic in olive oil. "
    "Add a kilogram of ripe tomatoes, cut into quarters, a pinch of salt and half a litre of "
    "vegetable stock. Simmer for twenty minutes, blend until smooth, and finish with a little "
    "cream and fresh basil. Serve with crusty bread.",

    "class LRUCache:\n    def __init__(self, capacity: int) -> None:\n        self.capacity = "
    "capacity\n        self.items: dict[str, object] = {}\n\n    def get(self, key: str):\n"
    "        if key not in self.items:\n            return None\n        value = "
    "self.items.pop(key)\n        self.items[key] = value\n        return value\n\n"
    "    def put(self, key: str, value: object) -> None:\n        self.items.pop(key, None)\n"
    "        self.items[key] = value\n        if len(self.items) > self.capacity:\n"
    "            self.items.pop(next(iter(self.items)))\n",

    "Mount Kilimanjaro, in Tanzania, is the highest mountain in Africa, rising about 5,895 metres "
    "above sea level. Climbers pass through five climate zones on the way to the summit, from "
    "farmland and rainforest to alpine desert and, finally, a landscape of ice and rock. Most "
    "routes take between five and nine days, and acclimatisation is the key to success.",

    "Dear Ms Patel,\n\nThank you for your letter of 14 May. I am pleased to confirm that your "
    "application has been accepted and that your course will begin on 2 September. Please bring "
    "a form of identification to the enrolment session. If you have any questions, do not "
    "hesitate to contact me.\n\nYours sincerely,\nJonathan Reed\nAdmissions Office",

    "Let f(x) = 3x^2 - 2x + 1. The derivative is f'(x) = 6x - 2, which is zero at x = 1/3. Since "
    "the second derivative, 6, is positive, this point is a minimum, and the minimum value is "
    "f(1/3) = 3/9 - 2/3 + 1 = 2/3. The integral of f from 0 to 1 equals 1 - 1 + 1 = 1.",

    "Error: connection refused (errno 111) while contacting 10.0.3.17:5432\n"
    "Retrying in 2 s (attempt 2 of 5)\nRetrying in 4 s (attempt 3 of 5)\n"
    "INFO  database ready after 7.3 s\nINFO  applied 14 migrations\n"
    "WARN  slow query (1,284 ms): SELECT * FROM events WHERE user_id = $1",

    "The committee met on Tuesday to discuss the new cycling lanes. Supporters argued that safer "
    "routes would encourage more people to leave their cars at home, reducing traffic and "
    "pollution. Shop owners on the high street worried that fewer parking spaces would keep "
    "customers away. After a long debate, the committee agreed to a six-month trial.",

    "import asyncio\n\nasync def fetch_all(client, urls):\n    async def one(url):\n"
    "        response = await client.get(url, timeout=10)\n        response.raise_for_status()\n"
    "        return url, len(response.content)\n\n    results = await asyncio.gather(*(one(u) for "
    "u in urls), return_exceptions=True)\n    return {url: size for url, size in results if not "
    "isinstance(url, Exception)}\n",

    "Q: What is the difference between weather and climate?\nA: Weather describes the conditions "
    "of the atmosphere over hours or days: rain this afternoon, a cold wind tomorrow. Climate is "
    "the average pattern of weather in a region over many years, such as hot dry summers and mild "
    "wet winters. A single cold week does not change the climate.",

    "She opened the old wooden box carefully. Inside, wrapped in faded blue silk, lay a silver "
    "watch, a bundle of letters tied with string and a photograph of a young man in uniform. On "
    "the back of the photograph someone had written a date and a single word: Remember. She sat "
    "down on the attic floor and began to read the first letter.",

    "| Country | Capital | Population (millions) |\n|---|---|---|\n| France | Paris | 68 |\n"
    "| Germany | Berlin | 84 |\n| Spain | Madrid | 48 |\n| Italy | Rome | 59 |\n"
    "| Poland | Warsaw | 37 |\n\nThe five countries together have about 296 million inhabitants.",

    "Regular exercise strengthens the heart, improves sleep and lifts mood. Adults are advised "
    "to do at least 150 minutes of moderate activity each week, such as brisk walking or "
    "cycling, plus muscle-strengthening exercises on two days. Even short sessions of ten "
    "minutes count, and any activity is better than none.",

    "git checkout -b fix/login-timeout\n# edit src/auth/session.py\ngit add -p\n"
    "git commit -m \"Extend the login session timeout to 30 minutes\"\n"
    "git push -u origin fix/login-timeout\n# then open a pull request and ask for a review",

    "The telescope collects light with a mirror 2.4 metres across. Because it orbits above the "
    "atmosphere, its images are not blurred by air turbulence, and it can observe ultraviolet "
    "light that never reaches the ground. Over three decades it has measured the expansion rate "
    "of the universe and photographed galaxies as they were billions of years ago.",

    "Meeting notes, 3 April\n- Attendees: Lina, Marco, Priya, Tom\n- Release 2.3 moves to 17 "
    "April because of the payment bug.\n- Marco will write the migration guide.\n- Priya reported "
    "that test coverage is now 81 percent.\n- Next meeting: Thursday at 10:00, room B.",

    "Once upon a time, in a village at the edge of a great forest, there lived a woodcutter and "
    "his two children. Every morning he went into the forest with his axe, and every evening he "
    "came home tired but content. One winter the snow fell so deep that the paths disappeared, "
    "and the children decided to find a way through the trees themselves.",

    "fn main() {\n    let words = vec![\"apple\", \"banana\", \"cherry\"];\n"
    "    let lengths: Vec<usize> = words.iter().map(|w| w.len()).collect();\n"
    "    let total: usize = lengths.iter().sum();\n"
    "    println!(\"{} words, {} letters in total\", words.len(), total);\n}\n",
)
