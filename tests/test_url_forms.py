"""URL forms as people report them: the platform, the kind of content and the canonical form
triage gives each, and groups of forms that must share one canonical form (the same content
escalated once)."""

# ruff: noqa: E501  (one form per line reads best as a table)

from __future__ import annotations

import pytest

from helpline_triage.links import SHORT_LINK_REASON, understand
from helpline_triage.platform_urls import platform_table

YT = "dQw4w9WgXcQ"
YT_WATCH = f"https://www.youtube.com/watch?v={YT}"
TT = "7234567890123456789"
TT_VIDEO = f"https://www.tiktok.com/@_/video/{TT}"
IG = "C1a2B3c4D5e"
IG_POST = f"https://www.instagram.com/p/{IG}"
X_POST = "https://x.com/i/status/1790000000000000001"
UC = "UC_x5XG1OV2P6uZZ5FSM9Ttw"

# fmt: off
# (url as reported, platform, kind, canonical URL)
FORMS: list[tuple[str, str, str, str]] = [
    # TikTok
    ("https://www.tiktok.com/@fake_head", "tiktok", "account", "https://www.tiktok.com/@fake_head"),
    ("https://www.tiktok.com/@Fake_Head/", "tiktok", "account", "https://www.tiktok.com/@fake_head"),
    ("http://tiktok.com/@fake.head?lang=en", "tiktok", "account", "https://www.tiktok.com/@fake.head"),
    ("https://m.tiktok.com/@fake_head", "tiktok", "account", "https://www.tiktok.com/@fake_head"),
    ("https://WWW.TIKTOK.COM/@FAKE_HEAD#top", "tiktok", "account", "https://www.tiktok.com/@fake_head"),
    ("tiktok.com/@fake_head", "tiktok", "account", "https://www.tiktok.com/@fake_head"),
    ("https://www.tiktok.com/@fake_head?_t=8kabc&_r=1", "tiktok", "account", "https://www.tiktok.com/@fake_head"),
    (f"https://www.tiktok.com/@fake_head/video/{TT}", "tiktok", "video", TT_VIDEO),
    (f"https://www.tiktok.com/@fake_head/video/{TT}?is_from_webapp=1&sender_device=pc&web_id=1", "tiktok", "video", TT_VIDEO),
    (f"https://m.tiktok.com/v/{TT}.html", "tiktok", "video", TT_VIDEO),
    (f"https://www.tiktok.com/embed/v2/{TT}", "tiktok", "video", TT_VIDEO),
    (f"https://www.tiktok.com/@/video/{TT}", "tiktok", "video", TT_VIDEO),
    (TT_VIDEO, "tiktok", "video", TT_VIDEO),
    (f"https://www.tiktok.com/@someone/photo/{TT}", "tiktok", "post", f"https://www.tiktok.com/@_/photo/{TT}"),
    ("https://www.tiktok.com/@fake_head/live", "tiktok", "live", "https://www.tiktok.com/@fake_head/live"),
    ("https://www.tiktok.com/tag/school", "tiktok", "unknown", "https://www.tiktok.com/tag/school"),
    # Instagram
    (f"https://www.instagram.com/p/{IG}/", "instagram", "post", IG_POST),
    (f"https://instagram.com/p/{IG}/?igsh=MWQ1ZGUxMzBkMA==", "instagram", "post", IG_POST),
    (f"https://instagr.am/p/{IG}", "instagram", "post", IG_POST),
    (f"http://www.instagr.am/p/{IG}/?utm_source=ig_web_copy_link", "instagram", "post", IG_POST),
    (f"https://www.instagram.com/reel/{IG}/?igshid=abc", "instagram", "video", IG_POST),
    (f"https://www.instagram.com/reels/{IG}/", "instagram", "video", IG_POST),
    (f"https://www.instagram.com/tv/{IG}", "instagram", "video", IG_POST),
    (f"https://www.instagram.com/fake.head/p/{IG}/", "instagram", "post", IG_POST),
    (f"https://www.instagram.com/fake.head/reel/{IG}/", "instagram", "video", IG_POST),
    (f"https://m.instagram.com/p/{IG}/?img_index=2", "instagram", "post", IG_POST),
    ("https://www.instagram.com/fake.head/", "instagram", "account", "https://www.instagram.com/fake.head"),
    ("https://www.instagram.com/Fake.Head?hl=en", "instagram", "account", "https://www.instagram.com/fake.head"),
    ("https://instagr.am/fake.head", "instagram", "account", "https://www.instagram.com/fake.head"),
    ("https://www.instagram.com/fake.head/tagged/", "instagram", "account", "https://www.instagram.com/fake.head"),
    ("https://www.instagram.com/_u/fake.head", "instagram", "account", "https://www.instagram.com/fake.head"),
    ("https://www.instagram.com/stories/fake.head/3300000000000000000/", "instagram", "story", "https://www.instagram.com/stories/fake.head/3300000000000000000"),
    ("https://www.instagram.com/stories/Fake.Head/", "instagram", "story", "https://www.instagram.com/stories/fake.head"),
    ("https://www.instagram.com/stories/highlights/17900000000000000/", "instagram", "story", "https://www.instagram.com/stories/highlights/17900000000000000"),
    ("https://www.instagram.com/explore/tags/school/", "instagram", "unknown", "https://www.instagram.com/explore/tags/school"),
    ("https://www.instagram.com/reels/audio/1234567890/", "instagram", "unknown", "https://www.instagram.com/reels/audio/1234567890"),
    # Facebook
    ("https://www.facebook.com/profile.php?id=100012345678901", "facebook", "account", "https://www.facebook.com/profile.php?id=100012345678901"),
    ("https://m.facebook.com/profile.php?id=100012345678901&ref=content_filter", "facebook", "account", "https://www.facebook.com/profile.php?id=100012345678901"),
    ("https://facebook.com/profile.php?id=100012345678901&sk=photos", "facebook", "account", "https://www.facebook.com/profile.php?id=100012345678901"),
    ("https://www.facebook.com/people/Fake-Head/100012345678901/", "facebook", "account", "https://www.facebook.com/profile.php?id=100012345678901"),
    ("https://www.facebook.com/100012345678901", "facebook", "account", "https://www.facebook.com/profile.php?id=100012345678901"),
    ("https://www.facebook.com/pages/Some-School/123456789", "facebook", "account", "https://www.facebook.com/profile.php?id=123456789"),
    ("https://www.facebook.com/Fake.Head.Teacher", "facebook", "account", "https://www.facebook.com/fake.head.teacher"),
    ("https://fb.com/fake.head.teacher/", "facebook", "account", "https://www.facebook.com/fake.head.teacher"),
    ("https://web.facebook.com/fake.head.teacher/about", "facebook", "account", "https://www.facebook.com/fake.head.teacher"),
    ("https://mbasic.facebook.com/fake.head.teacher?mibextid=ZbWKwL", "facebook", "account", "https://www.facebook.com/fake.head.teacher"),
    ("https://www.facebook.com/groups/parentsofyear7/", "facebook", "group", "https://www.facebook.com/groups/parentsofyear7"),
    ("https://m.facebook.com/groups/123456789012345/?ref=share", "facebook", "group", "https://www.facebook.com/groups/123456789012345"),
    ("https://www.facebook.com/groups/ParentsOfYear7/about", "facebook", "group", "https://www.facebook.com/groups/parentsofyear7"),
    ("https://www.facebook.com/groups/parentsofyear7/posts/987654321098765/", "facebook", "post", "https://www.facebook.com/groups/parentsofyear7/posts/987654321098765"),
    ("https://www.facebook.com/groups/parentsofyear7/permalink/987654321098765/", "facebook", "post", "https://www.facebook.com/groups/parentsofyear7/posts/987654321098765"),
    ("https://www.facebook.com/fake.head.teacher/posts/pfbid02AbCdEfGhIjKlMnOpQrStUvWxYz", "facebook", "post", "https://www.facebook.com/fake.head.teacher/posts/pfbid02AbCdEfGhIjKlMnOpQrStUvWxYz"),
    ("https://www.facebook.com/permalink.php?story_fbid=987654321&id=100012345678901", "facebook", "post", "https://www.facebook.com/permalink.php?story_fbid=987654321&id=100012345678901"),
    ("https://m.facebook.com/story.php?story_fbid=987654321&id=100012345678901&mibextid=abc", "facebook", "post", "https://www.facebook.com/permalink.php?story_fbid=987654321&id=100012345678901"),
    ("https://www.facebook.com/photo.php?fbid=555555555", "facebook", "post", "https://www.facebook.com/photo.php?fbid=555555555"),
    ("https://www.facebook.com/photo/?fbid=555555555&set=a.1", "facebook", "post", "https://www.facebook.com/photo.php?fbid=555555555"),
    ("https://www.facebook.com/watch/?v=444444444444444", "facebook", "video", "https://www.facebook.com/watch?v=444444444444444"),
    ("https://www.facebook.com/watch?v=444444444444444&ref=sharing", "facebook", "video", "https://www.facebook.com/watch?v=444444444444444"),
    ("https://www.facebook.com/fake.head.teacher/videos/444444444444444/", "facebook", "video", "https://www.facebook.com/watch?v=444444444444444"),
    ("https://www.facebook.com/video.php?v=444444444444444", "facebook", "video", "https://www.facebook.com/watch?v=444444444444444"),
    ("https://www.facebook.com/watch/live/?v=444444444444444", "facebook", "live", "https://www.facebook.com/watch?v=444444444444444"),
    ("https://www.facebook.com/reel/333333333333333?s=yWDuG2&fs=e", "facebook", "video", "https://www.facebook.com/reel/333333333333333"),
    ("https://www.facebook.com/marketplace/item/123", "facebook", "unknown", "https://www.facebook.com/marketplace/item/123"),
    ("https://www.facebook.com/groups/feed/", "facebook", "unknown", "https://www.facebook.com/groups/feed"),
    # YouTube
    (f"https://www.youtube.com/watch?v={YT}", "youtube", "video", YT_WATCH),
    (f"https://youtube.com/watch?v={YT}&feature=share&si=abc", "youtube", "video", YT_WATCH),
    (f"https://m.youtube.com/watch?v={YT}&t=42s", "youtube", "video", YT_WATCH),
    (f"https://www.youtube.com/watch?app=desktop&v={YT}&list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG&index=3", "youtube", "video", YT_WATCH),
    (f"https://music.youtube.com/watch?v={YT}", "youtube", "video", YT_WATCH),
    (f"https://youtu.be/{YT}", "youtube", "video", YT_WATCH),
    (f"https://youtu.be/{YT}?si=Xy12&t=5", "youtube", "video", YT_WATCH),
    (f"http://www.youtu.be/{YT}/", "youtube", "video", YT_WATCH),
    (f"https://www.youtube.com/shorts/{YT}", "youtube", "video", YT_WATCH),
    (f"https://youtube.com/shorts/{YT}?feature=share", "youtube", "video", YT_WATCH),
    (f"https://www.youtube.com/live/{YT}?si=abc", "youtube", "live", YT_WATCH),
    (f"https://www.youtube.com/embed/{YT}?start=10", "youtube", "video", YT_WATCH),
    (f"https://www.youtube-nocookie.com/embed/{YT}", "youtube", "video", YT_WATCH),
    (f"https://www.youtube.com/v/{YT}", "youtube", "video", YT_WATCH),
    ("https://www.youtube.com/@FakeHead", "youtube", "channel", "https://www.youtube.com/@fakehead"),
    ("https://m.youtube.com/@fakehead/videos", "youtube", "channel", "https://www.youtube.com/@fakehead"),
    ("https://www.youtube.com/@fakehead/live", "youtube", "live", "https://www.youtube.com/@fakehead/live"),
    (f"https://www.youtube.com/channel/{UC}", "youtube", "channel", f"https://www.youtube.com/channel/{UC}"),
    (f"https://www.youtube.com/channel/{UC}/about", "youtube", "channel", f"https://www.youtube.com/channel/{UC}"),
    (f"https://www.youtube.com/channel/{UC}/live", "youtube", "live", f"https://www.youtube.com/channel/{UC}/live"),
    ("https://www.youtube.com/c/FakeHeadChannel", "youtube", "channel", "https://www.youtube.com/c/fakeheadchannel"),
    ("https://www.youtube.com/FakeHeadChannel", "youtube", "channel", "https://www.youtube.com/fakeheadchannel"),
    ("https://www.youtube.com/user/FakeHeadUser", "youtube", "channel", "https://www.youtube.com/user/fakeheaduser"),
    ("https://www.youtube.com/playlist?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG&si=z", "youtube", "unknown", "https://www.youtube.com/playlist?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG"),
    ("https://www.youtube.com/post/UgkxAbCdEfGh", "youtube", "post", "https://www.youtube.com/post/UgkxAbCdEfGh"),
    ("https://www.youtube.com/results?search_query=school", "youtube", "unknown", "https://www.youtube.com/results?search_query=school"),
    # X and twitter.com
    ("https://x.com/fake_head/status/1790000000000000001", "x", "post", X_POST),
    ("https://twitter.com/Fake_Head/status/1790000000000000001?s=20&t=abcDEF", "x", "post", X_POST),
    ("https://mobile.twitter.com/fake_head/status/1790000000000000001", "x", "post", X_POST),
    ("https://www.twitter.com/anyone/status/1790000000000000001/photo/1", "x", "post", X_POST),
    ("https://twitter.com/i/web/status/1790000000000000001", "x", "post", X_POST),
    ("https://x.com/i/status/1790000000000000001", "x", "post", X_POST),
    ("https://twitter.com/fake_head/statuses/1790000000000000001", "x", "post", X_POST),
    ("https://twitter.com/#!/fake_head/status/1790000000000000001", "x", "post", X_POST),
    ("https://x.com/fake_head", "x", "account", "https://x.com/fake_head"),
    ("https://twitter.com/Fake_Head?ref_src=twsrc%5Egoogle", "x", "account", "https://x.com/fake_head"),
    ("https://mobile.x.com/fake_head/with_replies", "x", "account", "https://x.com/fake_head"),
    ("https://x.com/fake_head/media", "x", "account", "https://x.com/fake_head"),
    ("https://twitter.com/intent/user?screen_name=Fake_Head", "x", "account", "https://x.com/fake_head"),
    ("https://x.com/i/user/12345", "x", "account", "https://x.com/i/user/12345"),
    ("https://x.com/i/spaces/1yNxaNvaMEkKj", "x", "live", "https://x.com/i/spaces/1yNxaNvaMEkKj"),
    ("https://x.com/i/communities/1500000000000000000", "x", "group", "https://x.com/i/communities/1500000000000000000"),
    ("https://x.com/explore", "x", "unknown", "https://x.com/explore"),
    ("https://x.com/search?q=school&src=typed_query", "x", "unknown", "https://x.com/search?q=school"),
    # Snapchat
    ("https://www.snapchat.com/add/fake.head", "snapchat", "account", "https://www.snapchat.com/add/fake.head"),
    ("https://snapchat.com/add/Fake.Head?share_id=abc&locale=en-GB", "snapchat", "account", "https://www.snapchat.com/add/fake.head"),
    ("https://www.snapchat.com/@fake.head", "snapchat", "account", "https://www.snapchat.com/add/fake.head"),
    ("https://story.snapchat.com/u/fake.head", "snapchat", "account", "https://www.snapchat.com/add/fake.head"),
    ("https://www.snapchat.com/spotlight/W7_EDlXWTBiXAEEniNoMPwAAYdWxyb3B0ZWxsAZA", "snapchat", "video", "https://www.snapchat.com/spotlight/W7_EDlXWTBiXAEEniNoMPwAAYdWxyb3B0ZWxsAZA"),
    ("https://www.snapchat.com/@fake.head/spotlight/W7_EDlXWTBiXAEEniNoMPwAAYdWxyb3B0ZWxsAZA", "snapchat", "video", "https://www.snapchat.com/spotlight/W7_EDlXWTBiXAEEniNoMPwAAYdWxyb3B0ZWxsAZA"),
    ("https://story.snapchat.com/s/AbCdEf123", "snapchat", "story", "https://story.snapchat.com/s/AbCdEf123"),
    ("https://www.snapchat.com/s/AbCdEf123", "snapchat", "story", "https://story.snapchat.com/s/AbCdEf123"),
    ("https://www.snapchat.com/discover/Daily_News/1234567890", "snapchat", "story", "https://www.snapchat.com/discover/daily_news/1234567890"),
    # Threads (.net and .com)
    ("https://www.threads.net/@fake.head", "threads", "account", "https://www.threads.com/@fake.head"),
    ("https://threads.com/@Fake.Head/", "threads", "account", "https://www.threads.com/@fake.head"),
    ("https://www.threads.com/@fake.head/replies", "threads", "account", "https://www.threads.com/@fake.head"),
    ("https://www.threads.net/@fake.head/post/C8AbCdEfGhI", "threads", "post", "https://www.threads.com/t/C8AbCdEfGhI"),
    ("https://www.threads.com/@fake.head/post/C8AbCdEfGhI?xmt=AQGz", "threads", "post", "https://www.threads.com/t/C8AbCdEfGhI"),
    ("https://www.threads.net/t/C8AbCdEfGhI", "threads", "post", "https://www.threads.com/t/C8AbCdEfGhI"),
    ("https://www.threads.com/search?q=school", "threads", "unknown", "https://www.threads.com/search?q=school"),
    # WhatsApp
    ("https://whatsapp.com/channel/0029VaAbCdEfGhIjKlMn0p1q", "whatsapp", "channel", "https://whatsapp.com/channel/0029VaAbCdEfGhIjKlMn0p1q"),
    ("https://www.whatsapp.com/channel/0029VaAbCdEfGhIjKlMn0p1q/", "whatsapp", "channel", "https://whatsapp.com/channel/0029VaAbCdEfGhIjKlMn0p1q"),
    ("https://chat.whatsapp.com/KxAbCdEfGhIjKlMnOpQrSt", "whatsapp", "group", "https://chat.whatsapp.com/KxAbCdEfGhIjKlMnOpQrSt"),
    ("https://chat.whatsapp.com/invite/KxAbCdEfGhIjKlMnOpQrSt", "whatsapp", "group", "https://chat.whatsapp.com/KxAbCdEfGhIjKlMnOpQrSt"),
    ("https://wa.me/447700900123", "whatsapp", "account", "https://wa.me/447700900123"),
    ("https://wa.me/447700900123?text=hello", "whatsapp", "account", "https://wa.me/447700900123"),
    ("https://api.whatsapp.com/send?phone=447700900123&text=hi", "whatsapp", "account", "https://wa.me/447700900123"),
    ("https://wa.me/message/ABCDEFGHIJ1K1", "whatsapp", "account", "https://wa.me/message/ABCDEFGHIJ1K1"),
    # Discord
    ("https://discord.gg/AbCdEf", "discord", "group", "https://discord.com/invite/AbCdEf"),
    ("https://discord.gg/AbCdEf/", "discord", "group", "https://discord.com/invite/AbCdEf"),
    ("https://discord.com/invite/AbCdEf", "discord", "group", "https://discord.com/invite/AbCdEf"),
    ("https://discordapp.com/invite/AbCdEf?event=1", "discord", "group", "https://discord.com/invite/AbCdEf"),
    ("https://discord.com/channels/111111111111111111/222222222222222222", "discord", "channel", "https://discord.com/channels/111111111111111111/222222222222222222"),
    ("https://ptb.discord.com/channels/111111111111111111/222222222222222222/", "discord", "channel", "https://discord.com/channels/111111111111111111/222222222222222222"),
    ("https://discord.com/channels/111111111111111111/222222222222222222/333333333333333333", "discord", "comment", "https://discord.com/channels/111111111111111111/222222222222222222/333333333333333333"),
    ("https://canary.discordapp.com/channels/111111111111111111/222222222222222222/333333333333333333", "discord", "comment", "https://discord.com/channels/111111111111111111/222222222222222222/333333333333333333"),
    ("https://discord.com/channels/111111111111111111", "discord", "group", "https://discord.com/channels/111111111111111111"),
    ("https://discord.com/users/444444444444444444", "discord", "account", "https://discord.com/users/444444444444444444"),
    ("https://discord.com/login", "discord", "unknown", "https://discord.com/login"),
    # Reddit
    ("https://www.reddit.com/r/teachers/comments/1abcde/our_school_is_named/", "reddit", "post", "https://www.reddit.com/comments/1abcde"),
    ("https://old.reddit.com/r/Teachers/comments/1abcde/our_school_is_named/?share_id=x&utm_medium=web", "reddit", "post", "https://www.reddit.com/comments/1abcde"),
    ("https://reddit.com/comments/1abcde", "reddit", "post", "https://www.reddit.com/comments/1abcde"),
    ("https://redd.it/1abcde", "reddit", "post", "https://www.reddit.com/comments/1abcde"),
    ("https://np.reddit.com/r/teachers/comments/1abcde/", "reddit", "post", "https://www.reddit.com/comments/1abcde"),
    ("https://www.reddit.com/r/teachers/comments/1abcde/our_school_is_named/kx9y8z7/", "reddit", "comment", "https://www.reddit.com/comments/1abcde/_/kx9y8z7"),
    ("https://www.reddit.com/r/teachers/comments/1abcde/comment/kx9y8z7/?context=3", "reddit", "comment", "https://www.reddit.com/comments/1abcde/_/kx9y8z7"),
    ("https://www.reddit.com/comments/1abcde/_/kx9y8z7", "reddit", "comment", "https://www.reddit.com/comments/1abcde/_/kx9y8z7"),
    ("https://www.reddit.com/user/Fake_Head/", "reddit", "account", "https://www.reddit.com/user/fake_head"),
    ("https://old.reddit.com/u/fake_head", "reddit", "account", "https://www.reddit.com/user/fake_head"),
    ("https://www.reddit.com/user/fake_head/comments/", "reddit", "account", "https://www.reddit.com/user/fake_head"),
    ("https://www.reddit.com/r/Teachers/", "reddit", "group", "https://www.reddit.com/r/teachers"),
    ("https://old.reddit.com/r/teachers/top/?t=week", "reddit", "group", "https://www.reddit.com/r/teachers"),
    ("https://v.redd.it/abc123xyz", "reddit", "video", "https://v.redd.it/abc123xyz"),
    ("https://www.reddit.com/gallery/1abcde", "reddit", "post", "https://www.reddit.com/comments/1abcde"),
    # Twitch
    ("https://www.twitch.tv/fakehead", "twitch", "channel", "https://www.twitch.tv/fakehead"),
    ("https://twitch.tv/FakeHead/", "twitch", "channel", "https://www.twitch.tv/fakehead"),
    ("https://m.twitch.tv/fakehead/videos?filter=archives&sort=time", "twitch", "channel", "https://www.twitch.tv/fakehead"),
    ("https://player.twitch.tv/?channel=FakeHead&parent=example.com", "twitch", "channel", "https://www.twitch.tv/fakehead"),
    ("https://www.twitch.tv/videos/2000000001", "twitch", "video", "https://www.twitch.tv/videos/2000000001"),
    ("https://www.twitch.tv/fakehead/v/2000000001", "twitch", "video", "https://www.twitch.tv/videos/2000000001"),
    ("https://player.twitch.tv/?video=v2000000001&parent=example.com", "twitch", "video", "https://www.twitch.tv/videos/2000000001"),
    ("https://clips.twitch.tv/FunnyClipSlug-AbC123", "twitch", "video", "https://clips.twitch.tv/FunnyClipSlug-AbC123"),
    ("https://www.twitch.tv/fakehead/clip/FunnyClipSlug-AbC123?filter=clips", "twitch", "video", "https://clips.twitch.tv/FunnyClipSlug-AbC123"),
    ("https://www.twitch.tv/directory/category/fortnite", "twitch", "unknown", "https://www.twitch.tv/directory/category/fortnite"),
    # Roblox
    ("https://www.roblox.com/games/123456789/School-Roleplay", "roblox", "game", "https://www.roblox.com/games/123456789"),
    ("https://web.roblox.com/games/123456789/School-Roleplay?gameSearchSessionInfo=x", "roblox", "game", "https://www.roblox.com/games/123456789"),
    ("https://roblox.com/games/123456789", "roblox", "game", "https://www.roblox.com/games/123456789"),
    ("https://www.roblox.com/users/987654/profile", "roblox", "account", "https://www.roblox.com/users/987654/profile"),
    ("https://www.roblox.com/users/987654", "roblox", "account", "https://www.roblox.com/users/987654/profile"),
    ("https://www.roblox.com/groups/555555/Fake-School-Group#!/about", "roblox", "group", "https://www.roblox.com/groups/555555"),
    ("https://www.roblox.com/communities/555555/Fake-School-Group", "roblox", "group", "https://www.roblox.com/groups/555555"),
    ("https://www.roblox.com/catalog/1234/Hat", "roblox", "unknown", "https://www.roblox.com/catalog/1234/Hat"),
    # Telegram
    ("https://t.me/fakeheadchannel", "telegram", "channel", "https://t.me/fakeheadchannel"),
    ("https://telegram.me/FakeHeadChannel", "telegram", "channel", "https://t.me/fakeheadchannel"),
    ("https://t.me/s/fakeheadchannel", "telegram", "channel", "https://t.me/fakeheadchannel"),
    ("https://t.me/fakeheadchannel/123", "telegram", "post", "https://t.me/fakeheadchannel/123"),
    ("https://t.me/FakeHeadChannel/123?single", "telegram", "post", "https://t.me/fakeheadchannel/123"),
    ("https://t.me/s/fakeheadchannel/123", "telegram", "post", "https://t.me/fakeheadchannel/123"),
    ("https://telegram.dog/fakeheadchannel/123", "telegram", "post", "https://t.me/fakeheadchannel/123"),
    ("https://t.me/c/1234567890/55", "telegram", "post", "https://t.me/c/1234567890/55"),
    ("https://t.me/+AbCdEfGhIjK12345", "telegram", "group", "https://t.me/+AbCdEfGhIjK12345"),
    ("https://t.me/joinchat/AbCdEfGhIjK12345", "telegram", "group", "https://t.me/+AbCdEfGhIjK12345"),
    ("https://t.me/addstickers/SomePack", "telegram", "unknown", "https://t.me/addstickers/SomePack"),
    # Redirect wrappers understood as their target
    (f"https://l.facebook.com/l.php?u=https%3A%2F%2Fyoutu.be%2F{YT}&h=AT0abc", "youtube", "video", YT_WATCH),
    ("https://l.instagram.com/?u=https%3A%2F%2Fwww.tiktok.com%2F%40fake_head&e=AT1", "tiktok", "account", "https://www.tiktok.com/@fake_head"),
    ("https://www.youtube.com/redirect?q=https%3A%2F%2Fdiscord.gg%2FAbCdEf&event=video_description", "discord", "group", "https://discord.com/invite/AbCdEf"),
    ("https://www.google.com/url?q=https://x.com/fake_head/status/1790000000000000001&sa=D", "x", "post", X_POST),
    # Unknown hosts: the generic form
    ("https://example.org/page", "unknown", "unknown", "https://example.org/page"),
    ("HTTP://WWW.Example.ORG:80/Page/?b=2&a=1&utm_source=x&fbclid=y#frag", "unknown", "unknown", "https://example.org/Page?a=1&b=2"),
    ("https://m.example.org/page/", "unknown", "unknown", "https://example.org/page"),
    ("https://example.org:8443/page?ref=keep", "unknown", "unknown", "https://example.org:8443/page?ref=keep"),
    ("https://bücher.example/über", "unknown", "unknown", "https://xn--bcher-kva.example/%C3%BCber"),
    ("https://schoolgossip.example.co.uk/threads/year-9?s=abc", "unknown", "unknown", "https://schoolgossip.example.co.uk/threads/year-9?s=abc"),
    ("https://tiktok.com.evil.example/@fake_head", "unknown", "unknown", "https://tiktok.com.evil.example/@fake_head"),
    ("https://nottiktok.com/@fake_head", "unknown", "unknown", "https://nottiktok.com/@fake_head"),
    ("http://192.168.0.1/admin", "unknown", "unknown", "https://192.168.0.1/admin"),
    ("https://evil.example\\@tiktok.com/x", "unknown", "unknown", "https://evil.example/@tiktok.com/x"),
    # Known platform hosts that serve nothing triage names
    ("https://business.facebook.com/latest/home", "facebook", "unknown", "https://business.facebook.com/latest/home"),
    ("https://support.discord.com/hc/en-us", "discord", "unknown", "https://support.discord.com/hc/en-us"),
]

# Short links that only the platform can expand: (url, platform, kind, canonical).
SHORT_LINKS: list[tuple[str, str, str, str]] = [
    ("https://vm.tiktok.com/ZMabc123/", "tiktok", "unknown", "https://vm.tiktok.com/ZMabc123"),
    ("https://vt.tiktok.com/ZSxyz789/?_r=1", "tiktok", "unknown", "https://vt.tiktok.com/ZSxyz789"),
    ("https://www.tiktok.com/t/ZTRabc123/", "tiktok", "unknown", "https://tiktok.com/t/ZTRabc123"),
    ("https://m.tiktok.com/t/ZTRabc123", "tiktok", "unknown", "https://tiktok.com/t/ZTRabc123"),
    ("https://t.co/AbC123xyz", "x", "unknown", "https://t.co/AbC123xyz"),
    ("https://t.co/AbC123xyz?amp=1", "x", "unknown", "https://t.co/AbC123xyz"),
    ("https://fb.watch/abcDEF123/", "facebook", "video", "https://fb.watch/abcDEF123"),
    ("https://fb.me/e/AbC123", "facebook", "unknown", "https://fb.me/e/AbC123"),
    ("https://www.facebook.com/share/v/AbCdEf123/", "facebook", "video", "https://facebook.com/share/v/AbCdEf123"),
    ("https://m.facebook.com/share/p/AbCdEf123/?mibextid=xfxF2i", "facebook", "post", "https://facebook.com/share/p/AbCdEf123"),
    ("https://www.facebook.com/share/AbCdEf123/", "facebook", "unknown", "https://facebook.com/share/AbCdEf123"),
    ("https://www.instagram.com/share/reel/AbCdEf123", "instagram", "video", "https://instagram.com/share/reel/AbCdEf123"),
    ("https://t.snapchat.com/AbCdEf12", "snapchat", "unknown", "https://t.snapchat.com/AbCdEf12"),
    ("https://www.snapchat.com/t/AbCdEf12", "snapchat", "unknown", "https://snapchat.com/t/AbCdEf12"),
    ("https://www.reddit.com/r/teachers/s/AbCdEf123", "reddit", "unknown", "https://reddit.com/r/teachers/s/AbCdEf123"),
    ("https://ro.blox.com/Ebh5?af_dp=x", "roblox", "unknown", "https://ro.blox.com/Ebh5?af_dp=x"),
    ("https://www.roblox.com/share?code=AbC123&type=Server", "roblox", "unknown", "https://roblox.com/share?code=AbC123&type=Server"),
    ("https://www.threads.net/share/AbCdEf", "threads", "unknown", "https://threads.net/share/AbCdEf"),
]

NOT_URLS = [
    "",
    "   ",
    "not a url",
    "the account fake_head on tiktok",
    "ftp://tiktok.com/@fake_head",
    "javascript:alert(1)",
    "mailto:head@tiktok.com",
    "https://",
    "https://./x",
    "https://a..tiktok.com/x",
    "https://www.tiktok.com:99999/@fake_head",
    "https://jane.secret@tiktok.com/@fake_head",
    "https://[::1/x",
    "example.org/page",
    "fake_head@tiktok.com",
    "https://exa mple.com/x",
    "\ud800https://x.com/a",
]

# Forms of one content that must share a canonical form.
EQUIVALENT: list[list[str]] = [
    [
        f"https://www.youtube.com/watch?v={YT}",
        f"https://youtu.be/{YT}",
        f"https://m.youtube.com/watch?v={YT}&feature=youtu.be",
        f"https://www.youtube.com/shorts/{YT}",
        f"https://www.youtube.com/embed/{YT}",
        f"https://music.youtube.com/watch?v={YT}&si=x",
        f"https://www.youtube.com/live/{YT}",
    ],
    [
        f"https://instagr.am/p/{IG}",
        f"https://www.instagram.com/p/{IG}/",
        f"https://www.instagram.com/reel/{IG}/",
        f"https://www.instagram.com/reels/{IG}",
        f"https://www.instagram.com/someone/p/{IG}",
    ],
    [
        "https://twitter.com/jack/status/20",
        "https://x.com/Jack/status/20?s=46",
        "https://mobile.twitter.com/jack/status/20",
        "https://twitter.com/i/web/status/20",
        "https://x.com/someone_else/status/20",
    ],
    [
        "https://www.threads.net/@fake.head/post/C8AbCdEfGhI",
        "https://www.threads.com/@Fake.Head/post/C8AbCdEfGhI/",
        "https://threads.net/t/C8AbCdEfGhI",
    ],
    [
        "https://www.facebook.com/profile.php?id=100012345678901",
        "https://m.facebook.com/profile.php?id=100012345678901",
        "https://fb.com/profile.php?id=100012345678901&sk=about",
        "https://www.facebook.com/people/Fake-Head/100012345678901/",
    ],
    [
        f"https://www.tiktok.com/@fake_head/video/{TT}",
        f"https://m.tiktok.com/v/{TT}.html",
        f"https://www.tiktok.com/embed/v2/{TT}",
        f"https://www.tiktok.com/@someone/video/{TT}?is_from_webapp=1",
    ],
    [
        "https://www.reddit.com/r/teachers/comments/1abcde/slug/",
        "https://old.reddit.com/r/teachers/comments/1abcde/",
        "https://redd.it/1abcde",
        "https://reddit.com/comments/1abcde",
    ],
    [
        "https://discord.gg/AbCdEf",
        "https://discord.com/invite/AbCdEf",
        "https://discordapp.com/invite/AbCdEf",
    ],
    [
        "https://t.me/fakeheadchannel",
        "https://telegram.me/FakeHeadChannel",
        "https://t.me/s/fakeheadchannel",
    ],
    [
        "https://t.me/+AbCdEfGhIjK12345",
        "https://t.me/joinchat/AbCdEfGhIjK12345",
    ],
]

# Ids that a platform treats as case-sensitive must keep their case.
DIFFERENT: list[tuple[str, str]] = [
    (f"https://youtu.be/{YT}", f"https://youtu.be/{YT.lower()}"),
    (f"https://www.instagram.com/p/{IG}", f"https://www.instagram.com/p/{IG.lower()}"),
    ("https://discord.gg/AbCdEf", "https://discord.gg/abcdef"),
    ("https://vm.tiktok.com/ZMabc123/", "https://vm.tiktok.com/zmabc123/"),
    ("https://chat.whatsapp.com/KxAbCd", "https://chat.whatsapp.com/kxabcd"),
    ("https://t.me/+AbCdEfGhIjK12345", "https://t.me/+abcdefghijk12345"),
    ("https://example.org/Page", "https://example.org/page"),
    ("https://www.facebook.com/reel/333", "https://www.facebook.com/watch?v=333"),
]
# fmt: on


def test_the_table_is_large_and_covers_every_platform() -> None:
    forms = [f[0] for f in FORMS + SHORT_LINKS]
    assert len(set(forms)) == len(forms)
    assert len(forms) + len(NOT_URLS) >= 200
    assert {f[1] for f in FORMS} == set(platform_table().platforms) | {"unknown"}


@pytest.mark.parametrize(("url", "platform", "kind", "canonical"), FORMS)
def test_each_form_is_understood(url: str, platform: str, kind: str, canonical: str) -> None:
    info = understand(url)

    assert (info.is_url, info.platform, info.kind, info.canonical_url) == (
        True,
        platform,
        kind,
        canonical,
    )
    assert not info.short_link
    assert (info.reason is None) == (platform != "unknown" and kind != "unknown")
    assert understand(canonical).canonical_url == canonical


@pytest.mark.parametrize(("url", "platform", "kind", "canonical"), SHORT_LINKS)
def test_short_links_stay_as_given_and_say_so(
    url: str, platform: str, kind: str, canonical: str
) -> None:
    info = understand(url)

    assert (info.platform, info.kind, info.canonical_url, info.short_link) == (
        platform,
        kind,
        canonical,
        True,
    )
    assert info.reason == SHORT_LINK_REASON
    assert "never fetches" in info.reason
    assert understand(canonical).canonical_url == canonical


@pytest.mark.parametrize("text", NOT_URLS)
def test_what_is_not_a_url_says_why_without_echoing_it(text: str) -> None:
    info = understand(text)

    assert (info.is_url, info.platform, info.kind, info.canonical_url) == (
        False,
        "unknown",
        "unknown",
        None,
    )
    assert info.reason
    assert info.reason.startswith("cannot be read as a URL")
    for secret in ("fake_head", "jane.secret", "99999", "alert", "mple"):
        assert secret not in info.reason


@pytest.mark.parametrize("group", EQUIVALENT, ids=lambda g: g[0].split("/")[2])
def test_forms_of_one_content_share_one_canonical_form(group: list[str]) -> None:
    canonical = {understand(url).canonical_url for url in group}

    assert len(canonical) == 1
    assert None not in canonical


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_case_sensitive_ids_and_distinct_content_stay_apart(a: str, b: str) -> None:
    assert understand(a).canonical_url != understand(b).canonical_url


def test_every_host_group_belongs_to_its_platform() -> None:
    table = platform_table()

    for slug, platform in table.platforms.items():
        for group in platform.routes:
            assert table.platform_of(group) == slug
    for host, group in table.groups.items():
        assert table.platform_of(host) == table.platform_of(group)
