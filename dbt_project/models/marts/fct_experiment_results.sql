{#
  A/B test results per tenant, experiment and variant over the tenant's whole
  history: a run recomputes every experiment of its tenants, since a day's
  events can change an experiment's totals whatever day they land on. It sums
  the per-day aggregates (int_experiment_exposures_daily, int_conversions_daily:
  a row per visitor-day, rebuilt with their day), never the tenant's events, so
  the statistics come from the same counts as a recompute over every event.
#}
{{
  config(
    pre_hook="{% if is_incremental() %}delete from {{ this }} where {{ tenant_filter('tenant_id') }}{% endif %}",
    indexes=[{'columns': ['tenant_id', 'experiment_id', 'variant'], 'unique': true}],
  )
}}

{#- erfc(x) for x >= 0 by W. J. Cody's rational Chebyshev approximations
    (Math. Comp. 23, 1969; netlib specfun CALERF) in three ranges of x:
    relative error below 1e-15 in double precision, on any Postgres version.
    Coefficients are listed from the highest power down, for Horner's rule. -#}
{%- set near_zero_numerator = [
    '1.85777706184603153e-1', '3.16112374387056560e00', '1.13864154151050156e02',
    '3.77485237685302021e02', '3.20937758913846947e03'] -%}
{%- set near_zero_denominator = [
    '1', '2.36012909523441209e01', '2.44024637934444173e02',
    '1.28261652607737228e03', '2.84423683343917062e03'] -%}
{%- set middle_numerator = [
    '2.15311535474403846e-8', '5.64188496988670089e-1', '8.88314979438837594e00',
    '6.61191906371416295e01', '2.98635138197400131e02', '8.81952221241769090e02',
    '1.71204761263407058e03', '2.05107837782607147e03', '1.23033935479799725e03'] -%}
{%- set middle_denominator = [
    '1', '1.57449261107098347e01', '1.17693950891312499e02',
    '5.37181101862009858e02', '1.62138957456669019e03', '3.29079923573345963e03',
    '4.36261909014324716e03', '3.43936767414372164e03', '1.23033935480374942e03'] -%}
{%- set tail_numerator = [
    '1.63153871373020978e-2', '3.05326634961232344e-1', '3.60344899949804439e-1',
    '1.25781726111229246e-1', '1.60837851487422766e-2', '6.58749161529837803e-4'] -%}
{%- set tail_denominator = [
    '1', '2.56852019228982242e00', '1.87295284992346047e00',
    '5.27905102951428412e-1', '6.05183413124413191e-2', '2.33520497626869185e-3'] -%}
{#- exp(-x^2) computed as exp(-r^2) * exp(-(x - r)(x + r)), r = x rounded down to 1/16,
    so that squaring x loses no precision (Cody's device). -#}
{%- set exp_minus_x_squared = 'exp(-(trunc(x * 16) / 16) * (trunc(x * 16) / 16))'
    ~ ' * exp(-(x - trunc(x * 16) / 16) * (x + trunc(x * 16) / 16))' -%}
{#- Each polynomial by Horner's rule, as SQL over the column x. -#}
{%- set polynomials = {} -%}
{%- for name, coefficients, variable in [
    ('near_zero_numerator', near_zero_numerator, 'x * x'),
    ('near_zero_denominator', near_zero_denominator, 'x * x'),
    ('middle_numerator', middle_numerator, 'x'),
    ('middle_denominator', middle_denominator, 'x'),
    ('tail_numerator', tail_numerator, '1 / (x * x)'),
    ('tail_denominator', tail_denominator, '1 / (x * x)'),
] -%}
    {%- set polynomial = namespace(sql=coefficients[0]) -%}
    {%- for coefficient in coefficients[1:] -%}
        {%- set polynomial.sql = '(' ~ polynomial.sql ~ ') * ' ~ variable ~ ' + ' ~ coefficient -%}
    {%- endfor -%}
    {%- do polynomials.update({name: polynomial.sql}) -%}
{%- endfor %}

with exposures as (
    select *
    from {{ ref('int_experiment_exposures_daily') }}
    where {{ tenant_filter('tenant_id') }}
),

assignments as (
    -- First exposure wins: a visitor counts once per experiment, in the variant
    -- of their earliest exposure event (ties broken by event id): the earliest
    -- of their days' first exposures.
    select distinct on (tenant_id, experiment_id, visitor_id)
        tenant_id, experiment_id, visitor_id, first_variant as variant, first_exposed_at
    from exposures
    order by tenant_id, experiment_id, visitor_id, first_exposed_at, first_event_id
),

last_conversions as (
    -- A visitor converted after exposure iff their latest signup/purchase is at or
    -- after their first exposure: one aggregate instead of a lookup per visitor.
    select tenant_id, visitor_id, max(last_converted_at) as last_converted_at
    from {{ ref('int_conversions_daily') }}
    where {{ tenant_filter('tenant_id') }}
    group by tenant_id, visitor_id
),

exposed_variants as (
    -- A visitor switched when they were exposed to more than one variant.
    select
        tenant_id,
        experiment_id,
        visitor_id,
        min(least_variant) <> max(greatest_variant) as switched
    from exposures
    group by tenant_id, experiment_id, visitor_id
),

outcomes as (
    select
        a.*,
        coalesce(c.last_converted_at >= a.first_exposed_at, false) as converted,
        x.switched
    from assignments as a
    left join last_conversions as c
        on c.tenant_id = a.tenant_id
        and c.visitor_id = a.visitor_id
    inner join exposed_variants as x
        on x.tenant_id = a.tenant_id
        and x.experiment_id = a.experiment_id
        and x.visitor_id = a.visitor_id
),

variants as (
    select
        tenant_id,
        experiment_id,
        variant,
        count(*) as exposed_visitors,
        count(*) filter (where converted) as converters,
        count(*) filter (where switched) as switched_visitors,
        min(first_exposed_at) as first_exposed_at
    from outcomes
    group by tenant_id, experiment_id, variant
),

compared as (
    -- Each variant against its experiment's 'control' (none for the control itself).
    select
        v.*,
        v.converters::float8 / v.exposed_visitors as conversion_rate,
        c.exposed_visitors as control_visitors,
        c.converters::float8 / c.exposed_visitors as control_rate,
        (v.converters + c.converters)::float8 / (v.exposed_visitors + c.exposed_visitors)
            as pooled_rate
    from variants as v
    left join variants as c
        on c.tenant_id = v.tenant_id
        and c.experiment_id = v.experiment_id
        and c.variant = 'control'
        and v.variant <> 'control'
),

tested as (
    -- Two-proportion z-test with the pooled standard error; none when it is 0
    -- (both rates 0 or both 1).
    select
        *,
        (conversion_rate - control_rate) / nullif(
            sqrt(
                pooled_rate * (1 - pooled_rate)
                * (1.0::float8 / exposed_visitors + 1.0::float8 / control_visitors)
            ),
            0
        ) as z_score
    from compared
),

erfc_arguments as (
    -- two-sided p = P(|Z| >= |z|) = erfc(|z| / sqrt(2))
    select *, abs(z_score) / sqrt(2::float8) as x
    from tested
)

select
    tenant_id,
    experiment_id,
    variant,
    variant = 'control' as is_control,
    exposed_visitors,
    converters,
    conversion_rate,
    switched_visitors,
    first_exposed_at,
    conversion_rate / nullif(control_rate, 0) - 1 as uplift,
    z_score,
    case
        when x is null then null
        when x <= 0.46875 then
            1 - x * ({{ polynomials.near_zero_numerator }})
                / ({{ polynomials.near_zero_denominator }})
        when x <= 4 then
            {{ exp_minus_x_squared }}
            * ({{ polynomials.middle_numerator }})
            / ({{ polynomials.middle_denominator }})
        -- beyond 26.543 erfc underflows double precision (and exp() would raise)
        when x < 26.543 then
            {{ exp_minus_x_squared }}
            * (
                0.56418958354775628695
                - ({{ polynomials.tail_numerator }})
                / ({{ polynomials.tail_denominator }})
                / (x * x)
            )
            / x
        else 0
    end as p_value
from erfc_arguments
