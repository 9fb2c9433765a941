{#
  The default channel grouping of a session, from its first page view's utm
  tags and referrer, first rule that matches wins:
  paid search, display, email, social, organic search, referral, direct, other.
#}
{# The channels default_channel can return, in its rule order (the is_channel test checks them). #}
{% macro channel_names() -%}
    {{ return(['paid search', 'display', 'email', 'social', 'organic search', 'referral', 'direct', 'other']) }}
{%- endmacro %}

{% macro referrer_host(referrer) -%}
    lower(substring({{ referrer }} from '^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?(?:www\.)?([^/:?#]+)'))
{%- endmacro %}

{% macro default_channel(utm_source, utm_medium, referrer) -%}
    {%- set search = "'(^|\\.)(google|bing|duckduckgo|yahoo|baidu|yandex|ecosia|qwant)\\.'" -%}
    {%- set social = "'(^|\\.)(facebook|instagram|linkedin|twitter|x|t|tiktok|pinterest|reddit|youtube)\\.(com|co)$'" -%}
    case
        when {{ utm_medium }} in ('cpc', 'ppc', 'paid', 'paidsearch', 'paid_search', 'sem')
            then 'paid search'
        when {{ utm_medium }} in ('display', 'cpm', 'banner', 'programmatic')
            then 'display'
        when {{ utm_medium }} in ('email', 'e-mail', 'newsletter')
            then 'email'
        when {{ utm_medium }} in ('social', 'social-network', 'social_media', 'sm', 'paid_social')
            or {{ referrer_host(referrer) }} ~ {{ social }}
            then 'social'
        when {{ utm_medium }} = 'organic'
            or ({{ utm_medium }} is null and {{ referrer_host(referrer) }} ~ {{ search }})
            then 'organic search'
        when {{ utm_medium }} = 'referral'
            or ({{ utm_medium }} is null and {{ referrer }} is not null)
            then 'referral'
        when {{ utm_medium }} is null and {{ utm_source }} is null and {{ referrer }} is null
            then 'direct'
        else 'other'
    end
{%- endmacro %}
